"""The collector's HTTP/1.1 connections, guarded where uvicorn leaves a door open (uvicorn's httptools protocol,
subclassed; ``build_server`` and ``serve`` name it).

* **Headers must arrive in time.** uvicorn times out an idle keep-alive connection, but not one that has not sent
  its request headers yet: a client that connects and sends nothing, or a header a byte a second, held its
  connection (and one of ``MAX_CONNECTIONS`` slots) for ever, and a few hundred of them made every device's upload
  answer 503. A request's headers must now be complete within ``HEADER_TIMEOUT_S`` of the connection (or of the
  request's first byte on a kept-alive one); else the answer is 408 and the connection is closed.
* **Headers have a size limit.** httptools keeps a header line in memory until it ends, with no limit: one endless
  header grew the collector by hundreds of MB. More than ``MAX_HEADER_BYTES`` before the headers end is answered 431.
* **A request the parser cannot read** (a negative or doubled Content-Length, a bad chunk) gets the collector's JSON
  refusal (what, expected, fix) instead of uvicorn's plain-text line.

Every answer here closes the connection: what the client sent next cannot be trusted to start a request.
"""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0  # a device sends its few hundred bytes of headers at once
MAX_HEADER_BYTES = 16 * 1024  # the request line and headers; a device's are under 1 KiB
PROTOCOL = f"{__name__}:GuardedHttpProtocol"  # what uvicorn's ``http`` setting names (workers import it)

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


def refusal_bytes(status: int, detail: str, expected: str, fix: str) -> bytes:
    """A whole HTTP/1.1 response: ``status`` with the collector's JSON refusal, closing the connection."""
    body = json.dumps({"detail": detail, "expected": expected, "fix": fix, "record_index": None, "field": None}
                      ).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on each request's headers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline = None  # the timer armed while a request's headers are awaited
        self._header_bytes = 0  # bytes received since the request began, while its headers are incomplete
        self._awaiting_headers = True

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
            if self._header_deadline is None:  # a kept-alive connection's next request begins
                self._arm_header_deadline()
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse(431, f"the request's headers passed {MAX_HEADER_BYTES} bytes without ending",
                         f"a request line and headers under {MAX_HEADER_BYTES} bytes (a device sends under 1 KiB)",
                         "send only the headers the protocol needs (Content-Type, Content-Length)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._awaiting_headers = True  # the next request's headers count from its first byte (data_received)
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "the request is not valid HTTP/1.1 (the parser stopped at it)",
                     "one Content-Length of digits, or chunked transfer encoding with valid chunks, and a known method",
                     "send the request with a standard HTTP client library")

    def _refuse(self, status: int, detail: str, expected: str, fix: str) -> None:
        logger.info("closed a connection with HTTP %d: %s", status, detail)
        self._disarm_header_deadline()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(refusal_bytes(status, detail, expected, fix))
            self.transport.close()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers:
            self._refuse(408, f"the request's headers did not arrive within {HEADER_TIMEOUT_S:g} s",
                         f"a request line and headers within {HEADER_TIMEOUT_S:g} s of connecting",
                         "send the whole request at once; open the connection when there is something to send")

