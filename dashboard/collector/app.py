"""The telemetry collector: an HTTP service that stores device batches exactly once.

``POST /v1/telemetry`` takes the envelope described in ``runtime/telemetry/protocol.md``,
checks all of it before writing anything, stores it in one transaction and answers
``{"acknowledged": [...], "duplicates": n}``; a resend of stored records is acknowledged again
without storing them twice. When the store cannot be reached or written (its PostgreSQL server is down, the
SQLite file is locked past its timeout) the answer is HTTP 503 ``{"detail", "retry": true}`` with a
``Retry-After`` header: never an acknowledgement, so the device keeps its outbox and retries with backoff.
``GET /v1/health`` answers ``{"status": "ok"}``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dashboard.collector.backends import open_store
from dashboard.collector.interface import StoreRefusedError, StoreUnavailableError, TelemetryStore
from dashboard.collector.schema import BatchError, CollectorLimits, parse_batch
from dashboard.collector.vocabulary import BundleVocabularies
from dashboard.data.settings import DEFAULT_BUNDLES, DEFAULT_DATABASE, DatabaseUrl
from runtime.telemetry.records import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8787  # unprivileged and unassigned; the collector binds loopback unless told otherwise
RETRY_AFTER_S = 30  # what a 503 suggests; devices back off exponentially on their own (runtime Backoff)


def _refusal(error: BatchError) -> JSONResponse:
    content = {"detail": str(error), "record_index": error.index, "field": error.field}
    return JSONResponse(status_code=error.status, content=content)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or ``BatchError(413)`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise BatchError(413, f"the body is {declared} bytes, over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BatchError(413, f"the body is over the {limit}-byte limit")
    return bytes(body)


def create_app(store: TelemetryStore, limits: CollectorLimits | None = None,
               vocabularies: BundleVocabularies | None = None) -> FastAPI:
    """The collector's ASGI app, writing to ``store``; records keep to ``vocabularies`` (default: none known)."""
    limits = limits or CollectorLimits()
    vocabularies = vocabularies or BundleVocabularies()
    app = FastAPI(title="edgemed telemetry collector", version=str(SCHEMA_VERSION))
    app.state.store = store

    @app.post("/v1/telemetry")
    async def receive_telemetry(request: Request) -> JSONResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media_type != "application/json":
                raise BatchError(415, "the body must be sent with Content-Type: application/json")
            body = await _read_body(request, limits.max_body_bytes)
            batch = await run_in_threadpool(parse_batch, body, limits, vocabularies.for_record)
        except BatchError as error:
            logger.info("refused a telemetry batch with HTTP %d: %s", error.status, error)
            return _refusal(error)
        try:
            receipt = await run_in_threadpool(store.insert_batch, batch.device_id, batch.records, batch.dropped)
        except StoreUnavailableError as error:
            logger.warning("telemetry store unavailable; answered 503 to device %s: %s", batch.device_id, error.what)
            return JSONResponse(status_code=503, content={"detail": str(error), "retry": True},
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        except StoreRefusedError as error:  # checked by parse_batch, still refused by the store (e.g. out of range)
            logger.warning("telemetry store refused a batch of device %s: %s", batch.device_id, error.what)
            return JSONResponse(status_code=422, content={"detail": str(error), "record_index": None,
                                                          "field": error.field})
        logger.debug(
            "device %s: %d records, %d already stored", batch.device_id, len(batch.records), receipt.duplicates
        )
        return JSONResponse({"acknowledged": receipt.acknowledged, "duplicates": receipt.duplicates})

    @app.get("/v1/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "schema_version": SCHEMA_VERSION, "accepts": list(SUPPORTED_SCHEMA_VERSIONS)}

    return app


def build_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = DEFAULT_PORT, log_level: str = "info"
) -> uvicorn.Server:
    """A ``uvicorn.Server`` for ``app`` (run it with ``.run()``; set ``.should_exit`` to stop it)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    return uvicorn.Server(config)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    database: Path | str | DatabaseUrl = DEFAULT_DATABASE,
    log_level: str = "info",
    bundles: Path | str = DEFAULT_BUNDLES,
) -> None:
    """Run the collector until interrupted, storing into ``database`` (a SQLite file or a PostgreSQL URL, migrated
    on start); records of the bundles published under ``bundles`` must keep to their labels and reference-profile
    features. A store that cannot be opened, or whose schema is newer than this code, raises before serving
    (``StoreUnavailableError``, ``StoreSchemaError``)."""
    store = open_store(database)
    try:
        logger.info("telemetry collector on http://%s:%d/v1/telemetry, storing in %s", host, port, store.location)
        build_server(create_app(store, vocabularies=BundleVocabularies(bundles)), host, port, log_level).run()
    finally:
        store.close()
