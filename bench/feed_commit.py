"""Cost of numbering live-feed events at commit (migration 0021), measured in one run.

Real and private to the run: PostgreSQL + TimescaleDB, migrated as in production (owner role
migrates, the gateway's role owns nothing). ``--threads`` connections each run
``--incidents`` incident lifecycles (raise, acknowledge, resolve: three transactions, each
with its timeline event and audit entry, through :class:`IncidentService`) as fast as they
can, in alternating phases after a warm-up (``--rounds`` pairs): as deployed, and with the
numbering trigger disabled, which is the baseline (the feed as it was before: ids only).
Prints transactions per second and commit latency for both, checks that every event got
exactly one feed number, and ends with one JSON line: ``threads``, ``transactions``,
``tx_per_s``, ``baseline_tx_per_s``, ``ratio`` (numbered / baseline throughput), ``p99_ms``,
``baseline_p99_ms``, ``unnumbered``, ``duplicate_numbers``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.ingest import site_definition
from gateway.commissioning import apply_site_definition
from gateway.localsvc import PostgresServer, free_port
from gateway.storage.migrate import migrate
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Role

SITE = "bench"
NURSE = Actor("bench-nurse", Role.DUTY_STAFF)


def run_phase(
    conninfo: str, threads: int, incidents: int, offset: int
) -> tuple[float, list[float]]:
    """Every thread raises, acknowledges and resolves ``incidents`` incidents of its own
    residents; returns (wall seconds, per-transaction seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        mine: list[float] = []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            service = IncidentService(conn)
            start.wait()
            for i in range(incidents):
                resident = f"r{offset + t * incidents + i}"
                t0 = time.perf_counter()
                incident, _ = service.raise_or_join(
                    Trigger(IncidentType.EMERGENCY_CALL, SITE, datetime.now(UTC), "bench",
                            resident_id=resident)
                )  # fmt: skip
                t1 = time.perf_counter()
                service.acknowledge(incident.id, NURSE)
                t2 = time.perf_counter()
                service.resolve(incident.id, NURSE, "no_action_needed")
                mine += [t1 - t0, t2 - t1, time.perf_counter() - t2]
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    return time.perf_counter() - t0, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--incidents", type=int, default=100, help="lifecycles per thread and phase")
    ap.add_argument("--rounds", type=int, default=2, help="baseline/numbered phase pairs")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shg-feed-"))
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
        app = f"{base} user=safehome password={app_pw}"
        with psycopg.connect(owner, autocommit=True) as conn:
            migrate(conn, app_role="safehome")
        per_phase = args.threads * args.incidents
        phases = ["warmup"] + ["baseline", "numbered"] * args.rounds
        with psycopg.connect(app, autocommit=True) as conn:
            apply_site_definition(conn, site_definition(len(phases) * per_phase))
        toggle = "ALTER TABLE incident_events {} TRIGGER incident_events_number"
        results: dict[str, tuple[float, list[float]]] = {}
        numbered_from = []
        for i, name in enumerate(phases):  # alternated, after a warm-up, so drift cancels
            with psycopg.connect(owner, autocommit=True) as conn:
                conn.execute(toggle.format("DISABLE" if name == "baseline" else "ENABLE"))
            wall, lat = run_phase(app, args.threads, args.incidents, i * per_phase)
            if name == "numbered":
                numbered_from.append(i * per_phase)
            if name != "warmup":
                total_wall, total_lat = results.get(name, (0.0, []))
                results[name] = (total_wall + wall, total_lat + lat)
        with psycopg.connect(app, autocommit=True) as conn:
            row = conn.execute(  # the events of the numbered phases
                "SELECT count(*) FILTER (WHERE e.feed_seq IS NULL),"
                " count(e.feed_seq) - count(DISTINCT e.feed_seq)"
                " FROM incident_events e JOIN incidents i ON i.id = e.incident_id"
                " WHERE (substr(i.resident_id, 2)::int / %s) * %s = ANY(%s)",
                (per_phase, per_phase, numbered_from),
            ).fetchone()
        assert row is not None
        unnumbered, duplicates = int(row[0]), int(row[1])
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)

    out: dict[str, Any] = {"threads": args.threads, "transactions": 3 * per_phase * args.rounds}
    for name, (wall, lat) in results.items():
        tps = len(lat) / wall
        p50, p99 = (float(np.percentile(lat, q)) * 1000 for q in (50, 99))
        print(f"{name:9s} {len(lat)} transactions in {wall:.2f} s: {tps:.0f} tx/s, "
              f"commit p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
        prefix = "" if name == "numbered" else "baseline_"
        out[f"{prefix}tx_per_s"] = round(tps, 1)
        out[f"{prefix}p99_ms"] = round(p99, 2)
    out["ratio"] = round(out["tx_per_s"] / out["baseline_tx_per_s"], 3)
    out["unnumbered"] = unnumbered
    out["duplicate_numbers"] = duplicates
    print(f"numbered/baseline throughput: {out['ratio']:.3f}; events without a number: "
          f"{unnumbered}, numbers used twice: {duplicates}")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
