"""The telemetry store's schema as numbered migrations, one list for both backends.

Version N means the same tables on SQLite and on PostgreSQL; each migration carries its statements in both
dialects (SQLite keeps times as canonical ISO-8601 text, PostgreSQL as ``timestamptz``; PostgreSQL record payloads
are ``jsonb``, aggregate and rollup payloads JSON kept as ``text`` (``json`` in migration 4, ``text`` since migration
6; a rollup's feature histograms in their own column since migration 5), and ids compare byte-wise under
``COLLATE "C"``, as SQLite's text does). A store applies the pending
migrations in order inside one locked transaction and records each in ``schema_version``; a store already at
the head is left untouched, and one at a version newer than ``HEAD`` is refused (``StoreSchemaError``).

Migration 1 is exactly the schema SQLite stores had before migrations existed (``IF NOT EXISTS`` everywhere), so
such a file is adopted as it is. Add a migration at the end, never edit a released one.

Sizing (1 000 devices, 30 days of per-minute aggregates = 43.2 M ``aggregates`` rows): the primary key
(device, minute, bundle, record_id) serves a device's time range and idempotency at once (a resend repeats all
four; a restarted stream's second partial aggregate of a minute has another record_id and is kept),
``aggregates_by_minute`` the fleet's time range, the hourly ``aggregate_rollups`` (720 k rows a month) long
ranges and their daily ``day_rollups`` (30 k rows a month) the 7- and 30-day views; the per-device counters in
``devices`` make the fleet overview O(devices) instead of a scan of every record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect is Dialect.SQLITE else self.postgres


# Migration 8's day identity, spelled out: a migration's statements never change with later code (``days.py``).
_DAY_IDENTITY = ("bundle_sha256", "variant", "provider", "task")

# The bookkeeping table itself (created before any migration runs).
VERSION_TABLE = {
    Dialect.SQLITE: (
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
        "applied_at TEXT NOT NULL, edgemed_version TEXT NOT NULL)"
    ),
    Dialect.POSTGRES: (
        "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, description text NOT NULL, "
        "applied_at timestamptz NOT NULL, edgemed_version text NOT NULL)"
    ),
}

_DEVICE_COUNTERS_BACKFILL = (
    "UPDATE devices SET records = s.records, last_sequence = s.last_sequence, first_time = s.first_time, "
    "last_time = s.last_time FROM (SELECT device_id, COUNT(*) AS records, MAX(sequence) AS last_sequence, "
    "MIN(time) AS first_time, MAX(time) AS last_time FROM telemetry GROUP BY device_id) AS s "
    "WHERE s.device_id = devices.device_id"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "telemetry records, unique per (device_id, sequence), and one row per device",
        sqlite=(
            "CREATE TABLE IF NOT EXISTS telemetry (device_id TEXT NOT NULL, sequence INTEGER NOT NULL, "
            "time TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL, UNIQUE (device_id, sequence))",
            "CREATE INDEX IF NOT EXISTS telemetry_by_time ON telemetry (time)",
            "CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, dropped INTEGER NOT NULL, "
            "first_received_at TEXT NOT NULL, last_received_at TEXT NOT NULL)",
        ),
        postgres=(
            'CREATE TABLE telemetry (device_id text COLLATE "C" NOT NULL, sequence bigint NOT NULL, '
            "time timestamptz NOT NULL, received_at timestamptz NOT NULL, payload jsonb NOT NULL, "
            "PRIMARY KEY (device_id, sequence))",
            "CREATE INDEX telemetry_by_time ON telemetry (time)",
            'CREATE TABLE devices (device_id text COLLATE "C" PRIMARY KEY, dropped bigint NOT NULL, '
            "first_received_at timestamptz NOT NULL, last_received_at timestamptz NOT NULL)",
        ),
    ),
    Migration(
        2,
        "per-device counters kept on insert (records, last sequence, first and last time); device time index",
        sqlite=(
            "ALTER TABLE devices ADD COLUMN records INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE devices ADD COLUMN last_sequence INTEGER",
            "ALTER TABLE devices ADD COLUMN first_time TEXT",
            "ALTER TABLE devices ADD COLUMN last_time TEXT",
            _DEVICE_COUNTERS_BACKFILL,
            "CREATE INDEX IF NOT EXISTS telemetry_by_device_time ON telemetry (device_id, time)",
        ),
        postgres=(
            "ALTER TABLE devices ADD COLUMN records bigint NOT NULL DEFAULT 0, ADD COLUMN last_sequence bigint, "
            "ADD COLUMN first_time timestamptz, ADD COLUMN last_time timestamptz",
            _DEVICE_COUNTERS_BACKFILL,
            "CREATE INDEX telemetry_by_device_time ON telemetry (device_id, time)",
        ),
    ),
    Migration(
        3,
        "per-minute aggregates, unique per (device_id, minute, bundle_id, record_id), and their hourly rollups",
        sqlite=(
            "CREATE TABLE aggregates (device_id TEXT NOT NULL, minute TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "record_id TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL, "
            "PRIMARY KEY (device_id, minute, bundle_id, record_id))",
            "CREATE INDEX aggregates_by_minute ON aggregates (minute)",
            "CREATE TABLE aggregate_rollups (device_id TEXT NOT NULL, hour TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "aggregates INTEGER NOT NULL, payload TEXT NOT NULL, updated_at TEXT NOT NULL, "
            "PRIMARY KEY (device_id, hour, bundle_id))",
            "CREATE INDEX aggregate_rollups_by_hour ON aggregate_rollups (hour)",
        ),
        postgres=(
            'CREATE TABLE aggregates (device_id text COLLATE "C" NOT NULL, minute timestamptz NOT NULL, '
            'bundle_id text COLLATE "C" NOT NULL, record_id text COLLATE "C" NOT NULL, '
            "received_at timestamptz NOT NULL, payload jsonb NOT NULL, "
            "PRIMARY KEY (device_id, minute, bundle_id, record_id))",
            "CREATE INDEX aggregates_by_minute ON aggregates (minute)",
            'CREATE TABLE aggregate_rollups (device_id text COLLATE "C" NOT NULL, hour timestamptz NOT NULL, '
            'bundle_id text COLLATE "C" NOT NULL, aggregates integer NOT NULL, payload jsonb NOT NULL, '
            "updated_at timestamptz NOT NULL, PRIMARY KEY (device_id, hour, bundle_id))",
            "CREATE INDEX aggregate_rollups_by_hour ON aggregate_rollups (hour)",
        ),
    ),
    Migration(
        4,
        "the queue of aggregates not yet folded into their hourly rollups (a store that rolls up in the background); "
        "PostgreSQL: aggregate and rollup payloads as json text, TOAST-compressed with lz4 where the server has it",
        sqlite=(
            "CREATE TABLE rollup_queue (device_id TEXT NOT NULL, minute TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "record_id TEXT NOT NULL, PRIMARY KEY (device_id, minute, bundle_id, record_id))",
        ),
        postgres=(
            'CREATE TABLE rollup_queue (device_id text COLLATE "C" NOT NULL, minute timestamptz NOT NULL, '
            'bundle_id text COLLATE "C" NOT NULL, record_id text COLLATE "C" NOT NULL, '
            "PRIMARY KEY (device_id, minute, bundle_id, record_id))",
            # The store writes canonical JSON text and reads whole payloads back: jsonb's binary tree (built from
            # every one of a minute aggregate's ~700 values) costs the server more than the rest of an insert.
            "ALTER TABLE aggregates ALTER COLUMN payload TYPE json USING payload::json",
            "ALTER TABLE aggregate_rollups ALTER COLUMN payload TYPE json USING payload::json",
            # A minute aggregate is ~7 kB of JSON, past the 2 kB TOAST threshold: pglz (the default) costs several
            # times lz4's CPU on every insert. A server built without lz4 keeps pglz (the block only notes it).
            "DO $$ BEGIN "
            "ALTER TABLE aggregates ALTER COLUMN payload SET COMPRESSION lz4; "
            "ALTER TABLE aggregate_rollups ALTER COLUMN payload SET COMPRESSION lz4; "
            "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN "
            "RAISE NOTICE 'lz4 is not available on this server: aggregates stay pglz-compressed'; END $$",
        ),
    ),
    Migration(
        5,
        "hourly rollups keep their feature histograms in a column of their own (read only by the drift rule)",
        # A rollup is ~33 kB of JSON, ~85 % of it feature histograms that the Fleet page and every alert rule but
        # drift never read: kept apart, a read without them neither detoasts nor sends them. Rows written before
        # keep their features inside the payload (features NULL), read back whole the same; no data is moved.
        sqlite=("ALTER TABLE aggregate_rollups ADD COLUMN features TEXT",),
        postgres=(
            "ALTER TABLE aggregate_rollups ADD COLUMN features json",
            "DO $$ BEGIN ALTER TABLE aggregate_rollups ALTER COLUMN features SET COMPRESSION lz4; "
            "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN "
            "RAISE NOTICE 'lz4 is not available on this server: rollup features stay pglz-compressed'; END $$",
        ),
    ),
    Migration(
        6,
        "PostgreSQL: aggregate and rollup payloads (and rollup features) as text, lz4-compressed where the server "
        "has it; SQLite unchanged (its columns were text already)",
        # The collector writes JSON it has checked and encoded itself, and every read asks for the text: the json
        # type's validation on input was a second parse of every ~7-kB aggregate (~40 µs of server CPU each, a
        # quarter of an insert's). Changing the type rewrites both tables once (and resets their compression).
        sqlite=(),
        postgres=(
            "ALTER TABLE aggregates ALTER COLUMN payload TYPE text",
            "ALTER TABLE aggregate_rollups ALTER COLUMN payload TYPE text, ALTER COLUMN features TYPE text",
            "DO $$ BEGIN "
            "ALTER TABLE aggregates ALTER COLUMN payload SET COMPRESSION lz4; "
            "ALTER TABLE aggregate_rollups ALTER COLUMN payload SET COMPRESSION lz4, "
            "ALTER COLUMN features SET COMPRESSION lz4; "
            "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN "
            "RAISE NOTICE 'lz4 is not available on this server: payloads stay pglz-compressed'; END $$",
        ),
    ),
    Migration(
        7,
        "daily rollups (a device's day of hourly rollups folded into one row per bundle) and the queue of days to "
        "fold; every day that has hourly rollups is queued",
        # A month of a 1 000-device fleet is ~700 k hourly rollups (~18 GB of JSON): the 7- and 30-day views read
        # 30 daily rows per device instead (``days.py``). Days already stored are queued here and folded by the
        # collector's rollup job once they have ended.
        sqlite=(
            "CREATE TABLE day_rollups (device_id TEXT NOT NULL, day TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "hours INTEGER NOT NULL, aggregates INTEGER NOT NULL, payload TEXT NOT NULL, features TEXT, "
            "updated_at TEXT NOT NULL, PRIMARY KEY (device_id, day, bundle_id))",
            "CREATE INDEX day_rollups_by_day ON day_rollups (day)",
            "CREATE TABLE day_queue (device_id TEXT NOT NULL, day TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "PRIMARY KEY (device_id, day, bundle_id))",
            "INSERT INTO day_queue SELECT DISTINCT device_id, substr(hour, 1, 10) || 'T00:00:00.000000Z', bundle_id "
            "FROM aggregate_rollups",
        ),
        postgres=(
            'CREATE TABLE day_rollups (device_id text COLLATE "C" NOT NULL, day timestamptz NOT NULL, '
            'bundle_id text COLLATE "C" NOT NULL, hours integer NOT NULL, aggregates integer NOT NULL, '
            "payload text NOT NULL, features text, updated_at timestamptz NOT NULL, "
            "PRIMARY KEY (device_id, day, bundle_id))",
            "CREATE INDEX day_rollups_by_day ON day_rollups (day)",
            'CREATE TABLE day_queue (device_id text COLLATE "C" NOT NULL, day timestamptz NOT NULL, '
            'bundle_id text COLLATE "C" NOT NULL, PRIMARY KEY (device_id, day, bundle_id))',
            "INSERT INTO day_queue SELECT DISTINCT device_id, date_trunc('day', hour, 'UTC'), bundle_id "
            "FROM aggregate_rollups",
            "DO $$ BEGIN "
            "ALTER TABLE day_rollups ALTER COLUMN payload SET COMPRESSION lz4, ALTER COLUMN features SET COMPRESSION "
            "lz4; EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN "
            "RAISE NOTICE 'lz4 is not available on this server: daily rollups stay pglz-compressed'; END $$",
        ),
    ),
    Migration(
        8,
        "daily rollups apart per identity (bundle build, variant, provider, task): a part number in the key; the "
        "stored days folded across identities are queued to be folded again",
        # A day folded whole turned a variant switch into one "mixed" row (or null where the generic merge could
        # not keep a value), where the dashboard merges a pending day's hours per identity (``days.fold_day_parts``).
        # Rows stay as they are (part 0); those days are queued, so readers use their hours until the collector's
        # job has folded each again. A day of one identity is already what the new fold gives: left alone.
        sqlite=(
            "CREATE TABLE day_rollups_parts (device_id TEXT NOT NULL, day TEXT NOT NULL, bundle_id TEXT NOT NULL, "
            "part INTEGER NOT NULL, hours INTEGER NOT NULL, aggregates INTEGER NOT NULL, payload TEXT NOT NULL, "
            "features TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (device_id, day, bundle_id, part))",
            "INSERT INTO day_rollups_parts SELECT device_id, day, bundle_id, 0, hours, aggregates, payload, features, "
            "updated_at FROM day_rollups",
            "DROP TABLE day_rollups",
            "ALTER TABLE day_rollups_parts RENAME TO day_rollups",
            "CREATE INDEX day_rollups_by_day ON day_rollups (day)",
            "INSERT OR IGNORE INTO day_queue SELECT DISTINCT device_id, day, bundle_id FROM day_rollups WHERE "
            + " OR ".join(f"coalesce(payload ->> '$.{name}', 'mixed') = 'mixed'" for name in _DAY_IDENTITY),
        ),
        postgres=(
            "ALTER TABLE day_rollups ADD COLUMN part integer NOT NULL DEFAULT 0",
            "ALTER TABLE day_rollups DROP CONSTRAINT day_rollups_pkey, "
            "ADD PRIMARY KEY (device_id, day, bundle_id, part)",
            "INSERT INTO day_queue SELECT DISTINCT device_id, day, bundle_id FROM day_rollups WHERE "
            + " OR ".join(f"coalesce(payload::json ->> '{name}', 'mixed') = 'mixed'" for name in _DAY_IDENTITY)
            + " ON CONFLICT DO NOTHING",
        ),
    ),
    Migration(
        9,
        "simulated devices: the device ids whose uploads said they come from a simulator (edgemed simulate), so "
        "the dashboard labels them, and a store holding them, as simulated",
        sqlite=(
            "CREATE TABLE simulated_devices (device_id TEXT NOT NULL PRIMARY KEY, marked_at TEXT NOT NULL)",
        ),
        postgres=(
            'CREATE TABLE simulated_devices (device_id text COLLATE "C" NOT NULL PRIMARY KEY, '
            "marked_at timestamptz NOT NULL)",
        ),
    ),
)
HEAD = MIGRATIONS[-1].version  # the newest schema this code knows


def pending(found: int) -> tuple[Migration, ...]:
    """The migrations a store at version ``found`` still needs, oldest first."""
    return tuple(migration for migration in MIGRATIONS if migration.version > found)
