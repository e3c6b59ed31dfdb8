"""Read the collector's SQLite telemetry store (read-only) into pandas frames.

The dashboard never writes: it opens the file with ``mode=ro``, so a typo in ``--database`` cannot
create an empty store, and reading never blocks the collector (WAL readers and the writer do not
wait for each other). Every call opens and closes its own connection, which keeps the reader safe
to share between Streamlit sessions and threads.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd

from dashboard.collector.store import DEVICE_COLUMNS, DEVICES_QUERY, record_filter
from dashboard.data.files import DataUnavailableError
from runtime.telemetry.records import utc_timestamp

BUSY_TIMEOUT_S = 5.0  # a read waits this long for a checkpoint before giving up
# Column → SQL over the stored payload. Schema-2 records carry ``task`` and ``result``; schema-1 records (older
# devices) ``predicted_class`` and ``confidence``: both read into the same columns (``task`` None for schema 1).
_EXPRESSIONS = {
    "bundle_id": "json_extract(payload, '$.bundle_id')",
    "bundle_sha256": "json_extract(payload, '$.bundle_sha256')",
    "variant": "json_extract(payload, '$.variant')",
    "provider": "json_extract(payload, '$.provider')",
    "latency_us": "json_extract(payload, '$.latency_us')",
    "task": "json_extract(payload, '$.task')",
    "predicted_class": "COALESCE(json_extract(payload, '$.result.class'), json_extract(payload, '$.predicted_class'))",
    "confidence": "COALESCE(json_extract(payload, '$.result.confidence'), json_extract(payload, '$.confidence'))",
    "quality_flags": "json_extract(payload, '$.quality_flags')",
    "result": "json_extract(payload, '$.result')",
}
RECORD_COLUMNS = ("device_id", "sequence", "time", *_EXPRESSIONS)
_EXTRACTED = ", ".join(_EXPRESSIONS.values())


def _moment(value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError("telemetry times are compared in UTC; pass an aware datetime")
    return utc_timestamp(moment)


class TelemetryReader:
    """Read-only access to one telemetry database file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if not self.path.is_file():
            raise DataUnavailableError(
                f"no telemetry database at {self.path}",
                fix="start the collector (edgemed collector) or pass --database",
            )
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as connection:
                yield connection
        except sqlite3.Error as error:
            message = str(error)
            if "no such table" in message:
                raise DataUnavailableError(f"the telemetry database {self.path} has no telemetry tables yet") from None
            raise DataUnavailableError(f"the telemetry database {self.path} cannot be read ({message})") from None

    def count(self) -> int:
        """How many records are stored."""
        with self._connection() as connection:
            return int(connection.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])

    def devices(self) -> pd.DataFrame:
        """One row per device that ever uploaded (the collector's ``devices`` table plus record counts)."""
        with self._connection() as connection:
            rows = connection.execute(DEVICES_QUERY).fetchall()
        frame = pd.DataFrame(rows, columns=list(DEVICE_COLUMNS))
        for column in ("first_received_at", "last_received_at", "first_time", "last_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def records(
        self,
        device_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        with_features: bool = False,
    ) -> pd.DataFrame:
        """Records oldest first; ``time`` is a UTC timestamp, ``quality_flags`` a list per record, ``task`` the
        task kind (None for schema-1 records), ``result`` the task kind's result dict (None when the model could
        not judge the input, and for schema-1 records), ``predicted_class`` / ``confidence`` a classifier's (or an
        anomaly's label) whatever the schema.

        With ``with_features`` a ``features`` column holds each record's feature dict.
        """
        where, parameters = record_filter(device_id, None if since is None else _moment(since),
                                          None if until is None else _moment(until))
        features = ", json_extract(payload, '$.features')" if with_features else ""
        query = (
            f"SELECT device_id, sequence, time, {_EXTRACTED}{features} FROM telemetry{where} "
            "ORDER BY time, device_id, sequence"
        )
        with self._connection() as connection:
            rows = connection.execute(query, parameters).fetchall()
        columns = list(RECORD_COLUMNS) + (["features"] if with_features else [])
        frame = pd.DataFrame(rows, columns=columns)
        frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        frame["latency_us"] = pd.to_numeric(frame["latency_us"], errors="coerce")
        frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
        frame["quality_flags"] = [json.loads(text) if isinstance(text, str) else [] for text in frame["quality_flags"]]
        frame["result"] = [_object(text) for text in frame["result"]]
        if with_features:
            frame["features"] = [json.loads(text) if text else {} for text in frame["features"]]
        return frame


def _object(text: object) -> dict | None:
    """A stored result: its dict, or None (null, absent, or not an object)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:  # json_extract gives a bare string for a string result: not a result object
        return None
    return value if isinstance(value, dict) else None


def feature_table(records: pd.DataFrame) -> pd.DataFrame:
    """The ``features`` column of ``records`` spread into one numeric column per feature."""
    if records.empty or "features" not in records:
        return pd.DataFrame(index=records.index)
    return pd.DataFrame.from_records(list(records["features"]), index=records.index).apply(pd.to_numeric)
