"""Forward the outbox to the collector: at-least-once delivery, deletion only on acknowledgement.

See ``protocol.md`` beside this file. A batch is ``POST``ed as JSON; only the sequences the
collector acknowledges in an HTTP 200 are deleted from the outbox. Connection errors, timeouts
and 5xx leave everything in place (``upload_pending`` returns what it managed and raises
nothing); a 4xx means the collector judged the batch malformed, which raises
``CollectorRejectedError`` and also deletes nothing, so no record is ever lost on the device. A 409 with
``resume_after`` (a reset outbox reusing sequences the collector holds) renumbers the pending records above it and
sends them again.

Each envelope holds records of one schema version only (``version_groups``): per-event records (1, 2) and
aggregates (3) travel side by side, in envelopes of their own. Logs carry counts, status codes and the
collector's reason, never record contents.
Dependency rule: standard library only (``urllib.request``).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.telemetry.outbox import MAX_SEQUENCE, Outbox
from runtime.telemetry.records import (
    COLLECTOR_URL_EXPECTED,
    SCHEMA_VERSION,
    SIMULATED_HEADER,
    TelemetryError,
    collector_url_problem,
    record_schema_version,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500  # records per request; the collector accepts up to 5 000
DEFAULT_TIMEOUT_S = 5.0  # per request (connect and each read); a slow link fails fast and retries later
MAX_BODY_BYTES = 4 * 1024 * 1024  # below the collector's 5 MiB limit; bigger batches are split
MAX_REASON_CHARS = 500  # how much of a collector's rejection reason goes into the log


@dataclass(frozen=True)
class Backoff:
    """Waits between failed uploads in ``run_forever``: exponential, capped, jittered."""

    initial_s: float = 1.0  # wait after the first failure
    maximum_s: float = 300.0  # never wait longer than five minutes (also the wait after a 4xx)
    multiplier: float = 2.0  # each further failure doubles the wait
    jitter: float = 0.1  # ±10 %, so a fleet recovering from one outage does not retry in lockstep

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (≥ 1)."""
        base = min(self.maximum_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        return base * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)


TRANSIENT_STATUSES = (408, 429)  # the body did not arrive in time, too many requests: kept and sent again

class CollectorRejectedError(TelemetryError):
    """The collector answered 4xx: it judged the batch malformed. Nothing was deleted."""

    def __init__(self, status: int, reason: str) -> None:
        fix = ("the records stay in the outbox; check --telemetry-url: the collector's endpoint is "
               "http(s)://HOST:PORT/v1/telemetry" if status in (404, 405) else
               "the records stay in the outbox; align the device and collector versions (see protocol.md)")
        super().__init__(
            f"the telemetry collector rejected a batch with HTTP {status}: {reason[:MAX_REASON_CHARS]}",
            expected="HTTP 200 with the acknowledged sequences", fix=fix,
        )
        self.status = status
        self.reason = reason


class SequencesReusedError(CollectorRejectedError):
    """The collector answered 409: it holds other records under sequences of this batch (the outbox was reset and
    numbers from 1 again). Nothing was stored; ``resume_after`` is the highest sequence it holds for the device."""

    def __init__(self, reason: str, resume_after: int) -> None:
        super().__init__(409, reason)
        self.resume_after = resume_after


@dataclass(frozen=True)
class _Attempt:
    acknowledged: int  # rows deleted from the outbox
    healthy: bool  # False after a connection error, timeout, 5xx or a partial acknowledgement
    renumbered: bool = False  # the outbox was renumbered (HTTP 409): the window read before is stale


class Uploader:
    """Sends the outbox to ``url`` in batches; safe to run beside the thread that appends."""

    def __init__(
        self,
        outbox: Outbox,
        url: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        backoff: Backoff | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        before_acknowledge: Callable[[list[int]], None] | None = None,
        simulated: bool = False,
    ) -> None:
        problem = collector_url_problem(url) if isinstance(url, str) else "is not text"
        if problem:
            raise TelemetryError(f"the telemetry collector url {problem}", expected=COLLECTOR_URL_EXPECTED,
                                 fix="pass the collector's full telemetry url")
        if batch_size < 1:
            raise TelemetryError(f"batch_size is {batch_size}", expected="at least 1", fix="pass a positive size")
        self.outbox = outbox
        self.url = url
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self.max_body_bytes = max_body_bytes
        # Called with the acknowledged sequences after the collector answered, before the outbox
        # deletes them: the window in which a crash makes the next run resend (tests use it).
        self.before_acknowledge = before_acknowledge
        # A simulator's uploads say so (``SIMULATED_HEADER``): the collector and dashboard label them simulated.
        self.simulated = simulated
        # No proxies from the environment: a device talks to its configured collector directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def upload_pending(self) -> int:
        """Send everything pending; returns how many records the collector acknowledged.

        Raises only ``CollectorRejectedError`` (a 4xx); every other failure is logged and ends the
        run early with the records left in the outbox for the next try.
        """
        return self._upload().acknowledged

    def run_forever(self, stop_event: threading.Event, interval_s: float = 60.0) -> None:
        """Upload every ``interval_s`` until ``stop_event`` is set; back off while failing.

        Meant as a background thread's target; it never raises.
        """
        failures = 0
        while not stop_event.is_set():
            try:
                healthy = self._upload().healthy
                wait_s = None if healthy else self.backoff.delay(failures + 1)
            except CollectorRejectedError as error:
                logger.error("telemetry upload rejected (HTTP %d); records kept, retrying later", error.status)
                healthy, wait_s = False, self.backoff.maximum_s
            except (TelemetryError, sqlite3.Error, OSError) as error:
                logger.error("telemetry upload failed: %s", error)
                healthy, wait_s = False, self.backoff.delay(failures + 1)
            failures = 0 if healthy else failures + 1
            stop_event.wait(interval_s if wait_s is None else wait_s)

    # -- one run -------------------------------------------------------------------------------

    def _upload(self) -> _Attempt:
        total = 0
        limit = self.batch_size
        while True:
            window = self.outbox.pending(limit)
            if not window:
                return _Attempt(total, healthy=True)
            for records in version_groups(window):  # one envelope per schema version, the oldest group first
                sent = self._send(records)
                if sent is None:  # 413: the collector wants smaller batches
                    limit = max(1, len(records) // 2)
                    logger.warning("collector said the batch was too large; retrying with %d records", limit)
                    break
                total += sent.acknowledged
                if not sent.healthy:
                    return _Attempt(total, healthy=False)
                if sent.renumbered:  # read the window again: its sequences changed
                    break

    def _send(self, records: list[dict[str, Any]]) -> _Attempt | None:
        """POST ``records`` (one schema version; the first half again and again while the body is too large) and
        delete what the collector acknowledged. None after a 413 for several records; ``CollectorRejectedError``
        for any other 4xx."""
        body = self._encode(records)
        while len(body) > self.max_body_bytes and len(records) > 1:
            records = records[: len(records) // 2]
            body = self._encode(records)
        try:
            acknowledged = self._post(body)
        except SequencesReusedError as error:
            if not self.outbox.renumber_after(error.resume_after):  # nothing to renumber: not a reset outbox
                logger.error("collector answered HTTP 409 (sequences reused) for %d records, none at or below its "
                             "resume_after %d: %s", len(records), error.resume_after, error.reason[:MAX_REASON_CHARS])
                raise
            return _Attempt(0, healthy=True, renumbered=True)
        except CollectorRejectedError as error:
            if error.status == 413 and len(records) > 1:
                return None
            logger.error(
                "collector rejected %d records with HTTP %d: %s",
                len(records),
                error.status,
                error.reason[:MAX_REASON_CHARS],
            )
            raise
        if acknowledged is None:
            return _Attempt(0, healthy=False)
        sent = {record["sequence"] for record in records}
        confirmed = sorted(sent.intersection(acknowledged))
        if len(confirmed) != len(acknowledged):
            logger.warning(
                "collector acknowledged %d sequences that were not sent; ignored them",
                len(set(acknowledged) - sent),
            )
        if self.before_acknowledge is not None:
            self.before_acknowledge(confirmed)
        deleted = self.outbox.acknowledge(confirmed)
        if len(confirmed) < len(sent):
            logger.warning("collector acknowledged %d of %d records; the rest stay queued", len(confirmed), len(sent))
            return _Attempt(deleted, healthy=False)
        return _Attempt(deleted, healthy=True)

    def _encode(self, records: Sequence[dict[str, Any]]) -> bytes:
        envelope = {
            "schema_version": record_schema_version(records[0]),
            "device_id": self.outbox.device_id,
            "dropped": self.outbox.dropped(),
            "records": list(records),
        }
        return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def _post(self, body: bytes) -> list[int] | None:
        """The acknowledged sequences, or None after a failure that should be retried later."""
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"edgemed-runtime telemetry/{SCHEMA_VERSION}",
            } | ({SIMULATED_HEADER: "1"} if self.simulated else {}),
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = response.status
                answer = response.read()
        except urllib.error.HTTPError as error:
            with error:
                answer = error.read(64 * 1024)
            reason = _reason(answer)
            resume_after = _resume_after(answer) if error.code == 409 else None
            if resume_after is not None:
                raise SequencesReusedError(reason, resume_after) from None
            if 400 <= error.code < 500 and error.code not in TRANSIENT_STATUSES:
                raise CollectorRejectedError(error.code, reason) from None
            logger.warning(
                "collector answered HTTP %d (%s); records kept for the next try", error.code, reason[:MAX_REASON_CHARS]
            )
            return None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            logger.warning(
                "collector unreachable at %s (%s); records kept for the next try",
                self.url,
                getattr(error, "reason", error),
            )
            return None
        if status != 200:
            logger.warning("collector answered HTTP %d instead of 200; records kept for the next try", status)
            return None
        return _acknowledged(answer)


def version_groups(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The records split by schema version, each group in sequence order, the group of the oldest record first:
    never two versions in one envelope. An outbox filled before a runtime update still holds schema-1 records,
    which go in schema-1 envelopes ahead of the new ones; a device sending aggregates interleaves schema-3
    aggregates with the schema-2 records its event filter keeps, which then travel in two envelopes per window
    rather than one per switch between them."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record_schema_version(record), []).append(record)
    return list(groups.values())


def _reason(body: bytes) -> str:
    """The collector's ``detail`` from an error body, or the body's start as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip() or "no reason given"
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    return str(detail) if detail else text.strip()


def _resume_after(answer: bytes) -> int | None:
    """A 409's ``resume_after`` (a sequence: an integer from 0 to 2⁶³−1), or None when the body has none."""
    try:
        parsed = json.loads(answer)
    except ValueError:
        return None
    value = parsed.get("resume_after") if isinstance(parsed, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQUENCE:
        return None
    return value


def _acknowledged(answer: bytes) -> list[int] | None:
    try:
        parsed = json.loads(answer)
    except ValueError:
        logger.warning("collector answered 200 with a body that is not JSON; records kept for the next try")
        return None
    sequences = parsed.get("acknowledged") if isinstance(parsed, dict) else None
    if not isinstance(sequences, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in sequences
    ):
        logger.warning("collector answered 200 without an 'acknowledged' list; records kept for the next try")
        return None
    return sequences
