"""Storage per device per day, measured: simulated device streams written through the
gateway's own row-writing path into a private TimescaleDB, sized after ``VACUUM ANALYZE``.

Real and private to the run: PostgreSQL + TimescaleDB on a free port, migrated as in
production (the owner role migrates; the gateway's role writes). The device simulators of
:mod:`devices.virtual` (``--homes`` homes, each a resident with a bed sensor, a wearable, and a
door contact and a motion sensor playing the household model) run for ``--hours`` of device
time (default 24: one device-day) ending now. Each message is decoded and made into its row
exactly as ingest does (:func:`devices.protocol.decode`,
:func:`gateway.ingest_rows.message_item`) and stored by the gateway's
:class:`~gateway.storage.writer.BatchWriter` (binary COPY, one transaction a batch, the
pending-alarm markers in it) as the gateway's role.

Each stream (bed sensor vitals, accelerometer batches, heart rate, steps, heartbeats, events)
is measured on its own: its table is emptied, the stream written, ``VACUUM ANALYZE`` run, and
``hypertable_detailed_size()`` (heap, indexes, TOAST) taken minus the empty table's size.
Figures are per device, scaled to one device-day (``24 / --hours``). Each chunk has fixed
pages (heap, TOAST, one or more per index): on a site they are shared by every device, here by
the ``--homes`` written together, so the sparse streams (heart rate, steps, heartbeats, events)
of a short or one-home run carry them nearly alone and come out too large. Retention cost: the
per-day figure times the table's ``retention.*`` days (:class:`~gateway.settings.RetentionSettings`
defaults).

Baseline, same run: the payload bytes the devices sent for the same messages (JSON, as
published); ``ratio_to_payload`` = stored bytes / payload bytes. On the Apache edition
(``timescaledb.license = apache``) compression is not available: the figures are
uncompressed. On the Community edition the chunks are then compressed with the gateway's own
settings (``segmentby device_id``, :func:`gateway.storage.timescale.apply_policies`) and
sized again. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from devices.protocol import Channel, DeviceKind, Event, decode, format_topic, parse_topic
from devices.signals import DailyRoutine, ResidentModel
from devices.virtual import KitSensorDevice, VirtualDevice, make_virtual_device
from gateway.ingest_rows import Item, mark_alarms, message_item
from gateway.localsvc import PostgresServer, free_port
from gateway.mqttclient import Received
from gateway.registry import DeviceInfo
from gateway.settings import IngestSettings, RetentionSettings
from gateway.storage.migrate import migrate
from gateway.storage.timescale import Edition, TimescaleInfo, apply_policies, detect
from gateway.storage.writer import BatchWriter, Fresh, Row

PREFIX = "shg"
SITE = "bench"
MB = 1_000_000
# A home's devices, as commissioned: the device ids are of a realistic length (they are
# stored in every row and every index entry).
DEVICES: tuple[tuple[DeviceKind, str], ...] = (
    (DeviceKind.BED_SENSOR, "bed-{:06d}"),
    (DeviceKind.WEARABLE, "wr-{:06d}"),
    (DeviceKind.DOOR_CONTACT, "door-{:06d}"),
    (DeviceKind.MOTION_SENSOR, "pir-{:06d}"),
)
RETENTION_ATTR = {
    "readings": "readings_days",
    "accel": "accel_days",
    "device_events": "device_events_days",
    "device_state": "device_state_days",
}


@dataclass(slots=True)
class Stream:
    """One measured stream: its rows (in the gateway's row form) and what the devices sent."""

    name: str
    table: str
    devices: set[str] = field(default_factory=set)
    rows: list[Row] = field(default_factory=list)
    events: list[Item] = field(default_factory=list)  # event items (for the alarm markers)
    payload_bytes: int = 0


def stream_name(kind: DeviceKind, msg_type: str, channel: Channel) -> str:
    if msg_type == "heartbeat":
        return "heartbeat"  # every device's, reported per device
    if channel is Channel.EVENT:
        kit = kind in (DeviceKind.DOOR_CONTACT, DeviceKind.MOTION_SENSOR)
        return "kit.events" if kit else f"{kind.value}.events"
    return f"{kind.value}.{msg_type}"


def simulate(hours: float, homes: int, seed: int, end: float) -> dict[str, Stream]:
    """Run the homes' virtual devices for ``hours`` ending at ``end``; every message decoded
    and made into its row as ingest does, grouped by stream."""
    s = IngestSettings()
    start = end - hours * 3600.0
    devices: list[tuple[VirtualDevice, DeviceInfo]] = []
    for h in range(homes):
        resident = ResidentModel(DailyRoutine.sample(random.Random(f"{seed}:home{h}")))
        for kind, id_format in DEVICES:
            dev_id = id_format.format(h + 1)
            vdev = make_virtual_device(kind, dev_id, seed=seed, resident=resident, now=start,
                                       seq_start=int(start * 1000))  # fmt: skip
            if isinstance(vdev, KitSensorDevice):
                vdev.play_household()
            info = DeviceInfo(dev_id, SITE, kind, f"l{h}", None, None, None)
            devices.append((vdev, info))
    streams: dict[str, Stream] = {}
    steps = int(hours * 3600.0)
    for i in range(1, steps + 1):
        now = start + i
        for vdev, info in devices:
            for out in vdev.tick(now):
                topic_s = format_topic(PREFIX, SITE, vdev.id, out.channel)
                topic = parse_topic(topic_s, PREFIX)
                rec = Received(0, 0, 1, topic_s, out.payload, now + 0.05, False)
                msg = decode(topic, out.payload, info.kind, now=rec.received_at,
                             max_payload_bytes=s.max_payload_bytes,
                             max_future_s=s.max_future_s, max_age_s=s.max_age_s)  # fmt: skip
                item = message_item(rec, msg, topic, info, None)
                name = stream_name(info.kind, out.type, out.channel)
                st = streams.get(name)
                if st is None:
                    st = streams[name] = Stream(name, item.table)
                assert st.table == item.table
                st.devices.add(vdev.id)
                st.payload_bytes += len(out.payload)
                st.rows.append(item.row)
                if isinstance(msg, Event):
                    item.rec = replace(rec, payload=b"")
                    st.events.append(item)
    return streams


@dataclass(frozen=True, slots=True)
class Size:
    table: int
    index: int
    toast: int

    @property
    def total(self) -> int:
        return self.table + self.index + self.toast

    def minus(self, other: Size) -> Size:
        return Size(self.table - other.table, self.index - other.index, self.toast - other.toast)


def table_size(conn: psycopg.Connection[tuple[object, ...]], table: str) -> Size:
    conn.execute(f"VACUUM ANALYZE {table}")
    row = conn.execute(
        "SELECT table_bytes, index_bytes, toast_bytes FROM hypertable_detailed_size(%s)",
        (table,),
    ).fetchone()
    assert row is not None
    return Size(*(int(str(v or 0)) for v in row))


def write_stream(app: str, st: Stream, batch: int) -> None:
    """Store the stream's rows through the gateway's writer, ``batch`` rows a transaction."""
    with psycopg.connect(app, autocommit=True) as conn:
        writer = BatchWriter(conn)
        events = {id(it.row): it for it in st.events}
        for i in range(0, len(st.rows), batch):
            rows = st.rows[i : i + batch]
            items = [events[id(r)] for r in rows if id(r) in events]
            writer.write({st.table: rows}, after=functools.partial(_mark, items))


def _mark(items: list[Item], conn: psycopg.Connection[tuple[object, ...]], fresh: Fresh) -> None:
    """The writer's after-hook, as the gateway's: pending markers of alarm events."""
    mark_alarms(conn, items, fresh)


def compressed_size(conn: psycopg.Connection[tuple[object, ...]], table: str) -> Size:
    """Community edition: compress every chunk of ``table`` (the gateway's settings)."""
    conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s::regclass) c",
        (table,),
    )
    return table_size(conn, table)


def measure(owner: str, app: str, streams: dict[str, Stream], info: TimescaleInfo,
            batch: int) -> dict[str, tuple[Size, Size | None]]:  # fmt: skip
    sizes: dict[str, tuple[Size, Size | None]] = {}
    with psycopg.connect(owner, autocommit=True) as conn:
        if info.edition is Edition.COMMUNITY:  # compression settings as the gateway sets them
            apply_policies(conn, info, RetentionSettings())
        for st in streams.values():
            conn.execute(f"TRUNCATE {st.table}")
            empty = table_size(conn, st.table)
            write_stream(app, st, batch)
            plain = table_size(conn, st.table).minus(empty)
            packed = None
            if info.edition is Edition.COMMUNITY:
                packed = compressed_size(conn, st.table).minus(empty)
            sizes[st.name] = (plain, packed)
    return sizes


@contextmanager
def private_database() -> Iterator[tuple[str, str]]:
    """A private PostgreSQL + TimescaleDB, migrated: (owner conninfo, gateway conninfo)."""
    root = Path(tempfile.mkdtemp(prefix="shg-storage-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port())
    owner_pw, app_pw = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=app_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        owner = f"{base} user=safehome_owner password={owner_pw}"
        with psycopg.connect(owner, autocommit=True) as conn:
            migrate(conn, app_role="safehome")
        yield owner, f"{base} user=safehome password={app_pw}"
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(streams: dict[str, Stream], sizes: dict[str, tuple[Size, Size | None]],
           hours: float, retention: RetentionSettings) -> dict[str, Any]:  # fmt: skip
    per_day = 24.0 / hours
    out: dict[str, Any] = {}
    for name, st in streams.items():
        plain, packed = sizes[name]
        n_dev = len(st.devices)
        days = int(getattr(retention, RETENTION_ATTR[st.table]))
        mb_day = plain.total * per_day / n_dev / MB
        entry: dict[str, Any] = {
            "table": st.table,
            "devices": n_dev,
            "rows": len(st.rows),
            "rows_per_device_day": round(len(st.rows) * per_day / n_dev, 1),
            "payload_bytes": st.payload_bytes,
            "table_bytes": plain.table,
            "index_bytes": plain.index,
            "toast_bytes": plain.toast,
            "total_bytes": plain.total,
            "bytes_per_row": round(plain.total / len(st.rows), 1),
            "payload_bytes_per_row": round(st.payload_bytes / len(st.rows), 1),
            "mb_per_device_day": round(mb_day, 4),
            "ratio_to_payload": round(plain.total / st.payload_bytes, 3),
            "retention_days": days,
            "retention_mb_per_device": round(mb_day * days, 1),
            "compressed_bytes": None if packed is None else packed.total,
            "compressed_mb_per_device_day": None
            if packed is None
            else round(packed.total * per_day / n_dev / MB, 4),
        }
        out[name] = entry
    return out


def device_totals(streams: dict[str, Any]) -> dict[str, Any]:
    """Per device: the sum of its streams (heartbeats per device, the home's door and motion
    events shared by its two sensors), per day and over retention."""
    totals: dict[str, Any] = {}
    for kind, _dev in DEVICES:
        mine = [s for n, s in streams.items() if n.startswith(f"{kind.value}.")]
        if kind in (DeviceKind.DOOR_CONTACT, DeviceKind.MOTION_SENSOR) and "kit.events" in streams:
            mine.append(streams["kit.events"])  # the home's door and motion events, per sensor
        shared = [streams["heartbeat"]] if "heartbeat" in streams else []
        day = sum(s["mb_per_device_day"] for s in mine + shared)
        kept = sum(s["retention_mb_per_device"] for s in mine + shared)
        totals[kind.value] = {"mb_per_day": round(day, 3), "retention_mb": round(kept, 1)}
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0, help="device time written (24: a day)")
    ap.add_argument("--homes", type=int, default=1, help="homes written together (a site)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000, help="rows per write transaction")
    args = ap.parse_args()
    if args.hours <= 0 or args.homes < 1:
        ap.error("--hours must be positive and --homes at least 1")

    retention = RetentionSettings()
    t0 = time.perf_counter()
    streams = simulate(args.hours, args.homes, args.seed, time.time())
    simulated_s = time.perf_counter() - t0
    with private_database() as (owner, app):
        with psycopg.connect(owner, autocommit=True) as conn:
            info = detect(conn)
        sizes = measure(owner, app, streams, info, args.batch)
    figures = report(streams, sizes, args.hours, retention)
    totals = device_totals(figures)

    compression = (
        "measured (Community edition, segmentby device_id)"
        if info.edition is Edition.COMMUNITY
        else f"not available on this edition ({info.edition.value}): figures uncompressed"
    )
    print(f"TimescaleDB {info.version} ({info.edition.value} edition), {args.homes} home(s), "
          f"{args.hours:g} h of device time scaled to one device-day (simulated in "
          f"{simulated_s:.1f} s); compression: {compression}")  # fmt: skip
    print(f"{'stream':22s} {'table':13s} {'rows/day':>9s} {'B/row':>7s} {'payload B/row':>13s}"
          f" {'MB/day':>8s} {'ratio':>6s} {'keep d':>6s} {'kept MB':>9s}")  # fmt: skip
    for name, f in figures.items():
        print(f"{name:22s} {f['table']:13s} {f['rows_per_device_day']:9.0f} "
              f"{f['bytes_per_row']:7.1f} {f['payload_bytes_per_row']:13.1f} "
              f"{f['mb_per_device_day']:8.3f} {f['ratio_to_payload']:6.2f} "
              f"{f['retention_days']:6d} {f['retention_mb_per_device']:9.1f}")  # fmt: skip
        if f["compressed_bytes"] is not None:
            print(f"{'':22s} compressed: {f['compressed_mb_per_device_day']:.4f} MB/day "
                  f"({f['compressed_bytes'] / f['total_bytes']:.3f} of uncompressed)")  # fmt: skip
    for kind, t in totals.items():
        print(f"per {kind}: {t['mb_per_day']:.3f} MB/day, {t['retention_mb']:.1f} MB kept "
              f"(retention.* defaults)")  # fmt: skip
    stored = sum(f["total_bytes"] for f in figures.values())
    sent = sum(f["payload_bytes"] for f in figures.values())
    print(f"all streams: {stored:,} bytes stored for {sent:,} payload bytes sent "
          f"(ratio {stored / sent:.2f}, baseline: the payloads, same run)")  # fmt: skip
    print(json.dumps({
        "hours": args.hours,
        "homes": args.homes,
        "timescaledb": info.version,
        "edition": info.edition.value,
        "compression": info.edition is Edition.COMMUNITY,
        "streams": figures,
        "devices": totals,
        "stored_bytes": stored,
        "payload_bytes": sent,
        "ratio_to_payload": round(stored / sent, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
