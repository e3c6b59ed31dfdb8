"""The telemetry collector: an HTTP service that stores device batches exactly once.

``POST /v1/telemetry`` takes the envelope described in ``runtime/telemetry/protocol.md``,
checks all of it before writing anything, stores it in one transaction and answers
``{"acknowledged": [...], "duplicates": n}``; a resend of stored records is acknowledged again
without storing them twice. Schema-3 envelopes hold per-minute aggregates: each is stored once per ``record_id``
(``TelemetryStore.insert_aggregates``; a second aggregate of the same minute under another id, a restarted stream,
is kept beside it) and acknowledged by its sequence, like a record. When the store cannot be reached or written
(its PostgreSQL server is down, the SQLite file is locked past its timeout) the answer is HTTP 503
``{"detail", "retry": true}`` with a ``Retry-After`` header: never an acknowledgement, so the device keeps its
outbox and retries with backoff.
An upload with the header ``X-Edgemed-Simulated: 1`` comes from a simulator (``edgemed simulate``): once stored, its
device id is marked simulated (``TelemetryStore.mark_simulated``), and the dashboard labels that device as simulated
wherever it shows it — never patient data. (A mark that fails after the batch was stored answers 503 like any store
outage: the device resends, the batch is acknowledged as duplicates and the mark is written then.)
``GET /v1/health`` answers ``{"status": "ok"}`` while the process serves (liveness: also when its store is down).
``GET /v1/ready`` asks the store (readiness): 200 ``{"status": "ready", "rollups_pending": n}`` with how many stored
aggregates wait for the rollup job (a number that keeps growing means the job cannot keep up: hourly rollups then lag
their minutes), or 503 ``{"detail", "retry": true}`` when the store cannot be reached, as an upload would get.

``serve`` opens its store with deferred rollups: an upload stores its aggregates and queues them, and the collector's
``RollupJob`` folds the queue into the hourly rollups every few seconds, in batches, off the request path (the
merge of a minute's histograms is the costliest part of storing it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from dashboard.collector.aggregates import merge_device_aggregates
from dashboard.collector.backends import open_store
from dashboard.collector.days import DEFAULT_DAY_BATCH
from dashboard.collector.http_guard import PROTOCOL as GUARDED_PROTOCOL
from dashboard.collector.interface import (
    DEFAULT_ROLLUP_BATCH,
    Receipt,
    RollupMode,
    SequenceConflictError,
    StoreRefusedError,
    StoreUnavailableError,
    TelemetryStore,
)
from dashboard.collector.port import check_bindable
from dashboard.collector.schema import Batch, BatchError, CollectorLimits, body_too_large, parse_batch
from dashboard.collector.vocabulary import BundleVocabularies
from dashboard.data.settings import (
    DEFAULT_BUNDLES,
    DEFAULT_DATABASE,
    DatabaseUrl,
    database_environment_value,
    parse_database,
)
from runtime.telemetry.records import SCHEMA_VERSION, SIMULATED_HEADER, SUPPORTED_SCHEMA_VERSIONS, TelemetryError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8787  # unprivileged and unassigned; the collector binds loopback unless told otherwise
RETRY_AFTER_S = 30  # what a 503 suggests; devices back off exponentially on their own (runtime Backoff)
BODY_TIMEOUT_S = 60.0  # a body must arrive within this: 5 MiB at under 1 Mbit/s
MAX_CONNECTIONS = 256  # concurrent connections per process; beyond it uvicorn answers 503 (devices retry)
KEEP_ALIVE_S = 15  # an idle keep-alive connection is closed after this
ROLLUP_INTERVAL_S = 5.0  # how often the collector folds queued aggregates into rollups (deferred rollups)


def _unavailable(error: StoreUnavailableError, location: str | None = None) -> JSONResponse:
    """503 with the reason and when to retry: the device keeps its outbox. Where the store lives (a file path, a
    server's URL) is the collector's log's business, not a client's: ``location`` is named in the answer only as
    "the collector's database"."""
    detail = str(error)
    if location:
        detail = detail.replace(location, "the collector's database")
    return JSONResponse(status_code=503, content={"detail": detail, "retry": True},
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _refusal(error: BatchError) -> JSONResponse:
    content = {"detail": str(error), "record_index": error.index, "field": error.field}
    return JSONResponse(status_code=error.status, content=content)


async def _read_body(request: Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The request body, or ``BatchError(413)`` as soon as it passes ``limit`` bytes, or ``BatchError(408)`` when it
    has not all arrived within ``timeout_s`` (a client that stops sending holds no connection for ever)."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise body_too_large(limit, declared)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise body_too_large(limit)
    except ClientDisconnect:  # a device that lost its network mid-upload: nothing stored, it resends
        raise BatchError(400, f"the connection closed before the body was complete ({len(body)} bytes came)",
                         expected="the whole body (Content-Length bytes, or every chunk)",
                         fix="resend the batch; the device keeps it until it is acknowledged") from None
    except TimeoutError:
        raise BatchError(408, f"the body did not arrive within {timeout_s:g} s ({len(body)} bytes came)",
                         expected=f"the whole body within {timeout_s:g} s",
                         fix="retry on a better connection, or send fewer records per request") from None
    return bytes(body)


def aggregate_rows(batch: Batch) -> list[dict]:
    """The store's aggregate rows (``dashboard.collector.aggregates.AGGREGATE_FIELDS``) of a schema-3 batch: the
    whole checked aggregate, ``sequence`` included, is the payload."""
    return [{"device_id": record["device_id"], "bundle_id": record["bundle_id"], "minute": record["minute"],
             "record_id": record["record_id"], "payload": record} for record in batch.records]


def _store_batch(store: TelemetryStore, batch: Batch) -> Receipt:
    """Store a checked batch; the receipt acknowledges sequences (for aggregates: those whose record_id is stored,
    which after one transaction is every one of the batch)."""
    if not batch.aggregates:
        return store.insert_batch(batch.device_id, batch.records, batch.dropped)
    stored = store.insert_aggregates(aggregate_rows(batch), device_id=batch.device_id, dropped=batch.dropped)
    kept = set(stored.acknowledged)
    return Receipt(sorted(record["sequence"] for record in batch.records if record["record_id"] in kept),
                   stored.duplicates)


def _receive(store: TelemetryStore, body: bytes, limits: CollectorLimits,
             vocabularies: BundleVocabularies, simulated: set[str] | None = None) -> JSONResponse:
    """Check an upload and store it: the answer (200 with the receipt, 4xx refused, 503 store unavailable). With
    ``simulated`` (the upload said it comes from a simulator; the ids this process already marked), its device is
    marked simulated once stored."""
    try:
        batch = parse_batch(body, limits, vocabularies.for_record)
    except BatchError as error:
        logger.info("refused a telemetry batch with HTTP %d: %s", error.status, error)
        return _refusal(error)
    try:
        receipt = _store_batch(store, batch)
        if simulated is not None and batch.device_id not in simulated:
            store.mark_simulated(batch.device_id)
            simulated.add(batch.device_id)
    except StoreUnavailableError as error:
        logger.warning("telemetry store unavailable; answered 503 to device %s: %s", batch.device_id, error.what)
        return _unavailable(error, str(getattr(store, "location", "") or "") or None)
    except SequenceConflictError as error:  # a reset outbox: the device renumbers above resume_after and resends
        logger.warning("device %s reused %d stored sequence(s) (%d–%d) for other records (outbox reset?); answered "
                       "409 with resume_after %d, nothing stored", batch.device_id, len(error.conflicting),
                       error.conflicting[0], error.conflicting[-1], error.resume_after)
        return JSONResponse(status_code=409, content={"detail": str(error), "record_index": None,
                                                      "field": error.field, "resume_after": error.resume_after})
    except StoreRefusedError as error:  # checked by parse_batch, still refused by the store (e.g. out of range)
        logger.warning("telemetry store refused a batch of device %s: %s", batch.device_id, error.what)
        return JSONResponse(status_code=422, content={"detail": str(error), "record_index": None,
                                                      "field": error.field})
    logger.debug("device %s: %d records, %d already stored", batch.device_id, len(batch.records), receipt.duplicates)
    return JSONResponse({"acknowledged": receipt.acknowledged, "duplicates": receipt.duplicates})


class RollupJob:
    """The collector's background job for a store with deferred rollups: every ``ROLLUP_INTERVAL_S`` it folds the
    queued aggregates into their hourly rollups (batch after batch until the queue is empty), then the days that have
    ended into their daily rollups, off the request path.
    A store that cannot be reached is retried at the next interval; nothing is lost (the queue is in the store)."""

    def __init__(self, store: TelemetryStore, interval_s: float | None = None) -> None:
        self.store = store
        self.interval_s = ROLLUP_INTERVAL_S if interval_s is None else interval_s
        self.folded = 0
        self.days = 0  # device-days folded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgemed-rollups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        """Fold everything queued now, then the days that have ended (``days.py``); how many aggregates."""
        folded = 0
        while not self._stop.is_set():
            taken = self.store.roll_up_pending()
            folded += taken
            if taken < DEFAULT_ROLLUP_BATCH:
                break
        self.folded += folded
        while not self._stop.is_set():
            days = self.store.roll_up_days()
            self.days += days
            if days < DEFAULT_DAY_BATCH:
                break
        return folded

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                folded = self.run_once()
            except (StoreUnavailableError, TelemetryError) as error:
                logger.warning("rollup job: %s; retrying in %g s", error.what, self.interval_s)
                continue
            if folded:
                logger.debug("rollup job: folded %d aggregates into their hourly rollups", folded)


def create_app(store: TelemetryStore, limits: CollectorLimits | None = None,
               vocabularies: BundleVocabularies | None = None) -> FastAPI:
    """The collector's ASGI app, writing to ``store``; records keep to ``vocabularies`` (default: none known)."""
    limits = limits or CollectorLimits()
    vocabularies = vocabularies or BundleVocabularies()
    # No /docs, /redoc or /openapi.json: the Swagger page loads its scripts from a CDN, and the protocol is
    # runtime/telemetry/protocol.md.
    app = FastAPI(title="edgemed telemetry collector", version=str(SCHEMA_VERSION), docs_url=None, redoc_url=None,
                  openapi_url=None)
    location = str(getattr(store, "location", "") or "") or None

    @app.exception_handler(StarletteHTTPException)
    async def refuse_route(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """An unknown path (404) or method (405) answered as every refusal is: what, what was expected, the fix."""
        # the path is not echoed: a client may put anything in it
        asked = "this method on this path" if error.status_code == 405 else "this path"
        content = {"detail": f"{asked} is not part of the collector's API (HTTP {error.status_code} {error.detail})",
                   "expected": "POST /v1/telemetry (uploads), GET /v1/health, GET /v1/ready",
                   "fix": "see runtime/telemetry/protocol.md", "record_index": None, "field": None}
        return JSONResponse(status_code=error.status_code, content=content, headers=getattr(error, "headers", None))
    app.state.store = store
    marked: set[str] = set()  # devices this process marked simulated (a mark is idempotent: each written once here)
    if getattr(store, "rollup_mode", None) is RollupMode.DEFERRED:
        job = RollupJob(store)
        app.router.on_startup.append(job.start)
        app.router.on_shutdown.append(job.stop)

    @app.post("/v1/telemetry")
    async def receive_telemetry(request: Request) -> JSONResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media_type != "application/json":
                raise BatchError(415, "the body was not sent as JSON", expected="Content-Type: application/json",
                                 fix="send the body with that header")
            body = await _read_body(request, limits.max_body_bytes)
        except BatchError as error:
            logger.info("refused a telemetry batch with HTTP %d: %s", error.status, error)
            return _refusal(error)
        simulated = request.headers.get(SIMULATED_HEADER, "").strip() == "1"
        # Checking and storing are one trip to a worker thread: the event loop only moves bytes.
        return await run_in_threadpool(_receive, store, body, limits, vocabularies,
                                       marked if simulated else None)

    @app.get("/v1/health")
    async def health() -> dict[str, object]:  # on the event loop: answers while every worker thread waits on the store
        return {"status": "ok", "schema_version": SCHEMA_VERSION, "accepts": list(SUPPORTED_SCHEMA_VERSIONS)}

    @app.get("/v1/ready")
    def ready() -> JSONResponse:
        try:
            store.check_writable()  # ready means an upload now would be stored, not only read
            pending = store.pending_rollups()
        except StoreUnavailableError as error:
            logger.warning("readiness: telemetry store unavailable: %s", error.what)
            return _unavailable(error, location)
        return JSONResponse({"status": "ready", "rollups_pending": pending})

    return app


def build_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = DEFAULT_PORT, log_level: str = "info"
) -> uvicorn.Server:
    """A ``uvicorn.Server`` for ``app`` (run it with ``.run()``; set ``.should_exit`` to stop it)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, http=GUARDED_PROTOCOL,
                            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_S)
    return uvicorn.Server(config)


# How ``serve`` hands its settings to worker processes (uvicorn imports ``app_from_environment`` in each).
DATABASE_VARIABLE = "EDGEMED_COLLECTOR_DATABASE"
BUNDLES_VARIABLE = "EDGEMED_COLLECTOR_BUNDLES"


def app_from_environment() -> FastAPI:
    """The collector app of one worker process of ``serve(workers=N)``: its own store (and connection pool) on the
    location in ``$EDGEMED_COLLECTOR_DATABASE``, closed when the worker stops."""
    store = open_store(os.environ[DATABASE_VARIABLE], merge=merge_device_aggregates, rollups=RollupMode.DEFERRED)
    app = create_app(store, vocabularies=BundleVocabularies(os.environ.get(BUNDLES_VARIABLE, str(DEFAULT_BUNDLES))))
    app.router.on_shutdown.append(store.close)
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    database: Path | str | DatabaseUrl = DEFAULT_DATABASE,
    log_level: str = "info",
    bundles: Path | str = DEFAULT_BUNDLES,
    workers: int = 1,
) -> None:
    """Run the collector until interrupted, storing into ``database`` (a SQLite file or a PostgreSQL URL, migrated
    on start); records of the bundles published under ``bundles`` must keep to their labels and reference-profile
    features. A store that cannot be opened, or whose schema is newer than this code, raises before serving
    (``StoreUnavailableError``, ``StoreSchemaError``), as does an address that cannot be bound.

    ``workers`` > 1 runs that many processes on the one port (uvicorn's workers), each with its own store: checking
    and encoding an upload is Python work that one process does on one core at a time. Every write is idempotent
    and each batch is one transaction, so the workers need no coordination. A host and port that cannot be bound
    (another process on the port) raise ``CollectorAddressError`` before anything is opened."""
    check_bindable(host, port)
    store = open_store(database, merge=merge_device_aggregates, rollups=RollupMode.DEFERRED)
    try:
        logger.info("telemetry collector on http://%s:%d/v1/telemetry, storing in %s (%d worker%s)", host, port,
                    store.location, workers, "" if workers == 1 else "s")
        if workers == 1:
            build_server(create_app(store, vocabularies=BundleVocabularies(bundles)), host, port, log_level).run()
            return
    finally:
        store.close()  # migrated; each worker opens its own
    os.environ[DATABASE_VARIABLE] = database_environment_value(parse_database(database))
    os.environ[BUNDLES_VARIABLE] = str(Path(bundles).resolve())
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, http=GUARDED_PROTOCOL, limit_concurrency=MAX_CONNECTIONS,
                timeout_keep_alive=KEEP_ALIVE_S)
