"""Batched, idempotent writes of decoded device messages: binary COPY, one commit a batch.

The fast path COPYs a batch straight into each table. A redelivered or retried message
violates the table's unique (device_id, msg_id, time) index; then, and only then, the batch
for that table goes through a temporary staging table and ``INSERT … ON CONFLICT DO
NOTHING``, which stores every new row once and reports which were new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

Row = tuple[object, ...]
Fresh = dict[str, set[tuple[object, ...]]]
AfterWrite = Callable[[psycopg.Connection[tuple[object, ...]], Fresh], None]
"""Runs in the batch's transaction after its rows are written, with the new keys (it may
add writes of its own, e.g. gateway.ingest's pending-alarm markers, and amend the keys)."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...] = ("device_id", "msg_id")

    @property
    def key_index(self) -> tuple[int, ...]:
        return tuple(self.columns.index(k) for k in self.key)


READINGS = TableSpec(
    "readings",
    ("time", "device_id", "msg_id", "seq", "type", "presence", "heart_rate", "breathing_rate",
     "movement", "steps", "battery", "worn", "received_at"),
    ("timestamptz", "text", "text", "int8", "text", "bool", "float4", "float4", "float4",
     "int4", "float4", "bool", "timestamptz"),
)  # fmt: skip
ACCEL = TableSpec(
    "accel",
    ("time", "device_id", "msg_id", "seq", "fs", "n", "samples", "received_at"),
    ("timestamptz", "text", "text", "int8", "float4", "int2", "bytea", "timestamptz"),
)
DEVICE_EVENTS = TableSpec(
    "device_events",
    ("time", "device_id", "msg_id", "seq", "type", "data", "received_at"),
    ("timestamptz", "text", "text", "int8", "text", "jsonb", "timestamptz"),
)
DEVICE_STATE = TableSpec(
    "device_state",
    ("time", "device_id", "msg_id", "seq", "online", "battery", "firmware", "rssi", "received_at"),
    ("timestamptz", "text", "text", "int8", "bool", "float4", "text", "float4", "timestamptz"),
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    ("received_at", "topic", "device_id", "reason", "detail", "payload_size", "payload"),
    ("timestamptz", "text", "text", "text", "text", "int4", "bytea"),
    key=(),
)
TABLES: dict[str, TableSpec] = {
    t.name: t for t in (READINGS, ACCEL, DEVICE_EVENTS, DEVICE_STATE, DEAD_LETTERS)
}


class BatchWriter:
    """Owns one connection; ``write`` stores rows for several tables in one transaction."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn
        self._staged: set[str] = set()

    def write(self, rows_by_table: dict[str, list[Row]], after: AfterWrite | None = None) -> Fresh:
        """Store the rows; return, per deduplicated table, the keys of rows that were new.

        Tables absent from the result stored every row (no duplicates were present).
        ``after`` runs last, in the same transaction.
        Raises psycopg errors; the transaction is then rolled back and nothing is stored.
        """
        fresh: Fresh = {}
        with self.conn.transaction():
            for name, rows in rows_by_table.items():
                if not rows:
                    continue
                spec = TABLES[name]
                if not spec.key:
                    self._copy(spec.name, spec, rows)
                    continue
                try:
                    with self.conn.transaction():  # savepoint: a duplicate undoes only this
                        self._copy(spec.name, spec, rows)
                except psycopg.errors.UniqueViolation:
                    fresh[name] = self._insert_new(spec, rows)
            if after is not None:
                after(self.conn, fresh)
        return fresh

    def _copy(self, target: str, spec: TableSpec, rows: Sequence[Row]) -> None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        )
        with self.conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.set_types(list(spec.types))
            for row in rows:
                copy.write_row(row)

    def _insert_new(self, spec: TableSpec, rows: Sequence[Row]) -> set[tuple[object, ...]]:
        stage = f"stage_{spec.name}"
        if stage not in self._staged:
            self.conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS"
                ).format(sql.Identifier(stage), sql.Identifier(spec.name))
            )
            self._staged.add(stage)
        self.conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))
        self._copy(stage, spec, rows)
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, spec.key))
        cur = self.conn.execute(
            sql.SQL(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} "
                "ON CONFLICT DO NOTHING RETURNING {keys}"
            ).format(
                table=sql.Identifier(spec.name), cols=cols, stage=sql.Identifier(stage), keys=keys
            )
        )
        return {tuple(r) for r in cur.fetchall()}

    def reset(self) -> None:
        """Forget per-connection state (call after reconnecting)."""
        self._staged.clear()
