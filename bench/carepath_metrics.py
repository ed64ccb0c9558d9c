"""Care-path metrics benchmark: what a /metrics refresh costs as the incident history grows.

Real and private to the run: PostgreSQL + TimescaleDB with the project's schema, a site of
``--residents`` residents, and ``--incidents`` closed incidents of history, four timeline events
each (raised, acknowledged, resolved, closed), plus notification attempts and staff pages. Then
``--rounds`` times: ``--new`` incidents are raised and acknowledged, and the collector
(gateway.carepath_metrics.CarePathCollector, cache off) refreshes: it reads only what is new by
identity key, and the in-flight gauges from partial indexes.

Baseline, measured in the same run on the same database: the naive collector, which counts the
whole history at each scrape (``count(*)`` of every timeline event by kind, type and priority,
and the time-to-acknowledge buckets over all acknowledged incidents). ``ratio_naive_to_refresh``
is how many times the naive scrape costs at p50.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.ingest import site_definition
from gateway.carepath_metrics import CarePathCollector
from gateway.commissioning import apply_site_definition
from gateway.localsvc import PostgresServer, free_port
from gateway.storage.migrate import migrate

_HISTORY = """
WITH inc AS (
    INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical, state,
        first_trigger_at, last_trigger_at, raised_at, acknowledged_at, acknowledged_by,
        resolved_at, resolved_by, outcome, closed_at, closed_by, reason)
    SELECT 'bench', 'r' || (g %% %(residents)s), 'r' || (g %% %(residents)s),
        (ARRAY['fall', 'emergency_call', 'not_up', 'vitals_abnormal'])[1 + g %% 4],
        1 + g %% 3, false, 'closed', t, t, t, t + (g %% 240) * interval '1 second', 'staff',
        t + interval '10 minutes', 'staff', 'assisted', t + interval '20 minutes', 'staff', 'bench'
    FROM generate_series(1, %(n)s) g,
         LATERAL (SELECT now() - interval '400 days' + g * interval '5 minutes' AS t) s
    RETURNING id, raised_at, acknowledged_at, resolved_at, closed_at
)
INSERT INTO incident_events (incident_id, time, kind, actor)
SELECT id, raised_at, 'raised', 'system' FROM inc
UNION ALL SELECT id, acknowledged_at, 'acknowledged', 'staff' FROM inc
UNION ALL SELECT id, resolved_at, 'resolved', 'staff' FROM inc
UNION ALL SELECT id, closed_at, 'closed', 'staff' FROM inc
"""

_NAIVE = [
    """SELECT e.kind, i.type, i.priority, count(*) FROM incident_events e
       JOIN incidents i ON i.id = e.incident_id GROUP BY 1, 2, 3""",
    """SELECT priority, count(*) FILTER (WHERE d <= 60), count(*) FILTER (WHERE d <= 180),
              count(*), sum(d)
       FROM (SELECT priority, extract(epoch FROM acknowledged_at - raised_at) AS d
             FROM incidents WHERE acknowledged_at IS NOT NULL) x GROUP BY 1""",
    "SELECT channel, result, count(*) FROM notification_attempts GROUP BY 1, 2",
    "SELECT kind, count(*) FROM staff_pages GROUP BY 1",
]


def _new_incidents(conn: psycopg.Connection[object], n: int, residents: int, k: int) -> None:
    """``n`` open incidents raised and acknowledged (one per resident, all distinct)."""
    conn.execute(
        """
        WITH inc AS (
            INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical,
                state, first_trigger_at, last_trigger_at, raised_at, acknowledged_at,
                acknowledged_by, reason)
            SELECT 'bench', 'r' || ((%(k)s * %(n)s + g) %% %(residents)s),
                'r' || ((%(k)s * %(n)s + g) %% %(residents)s), 'no_activity', 3, false,
                'acknowledged', now() - interval '40 seconds', now() - interval '40 seconds',
                now() - interval '40 seconds', now(), 'staff', 'bench'
            FROM generate_series(1, %(n)s) g RETURNING id, raised_at, acknowledged_at
        )
        INSERT INTO incident_events (incident_id, time, kind, actor)
        SELECT id, raised_at, 'raised', 'system' FROM inc
        UNION ALL SELECT id, acknowledged_at, 'acknowledged', 'staff' FROM inc
        """,
        {"n": n, "residents": residents, "k": k},
    )
    # Leave no open incident behind (one open incident per resident and type).
    conn.execute(
        "UPDATE incidents SET state = 'cancelled', cancelled_at = now(), "
        "cancel_source = 'staff' WHERE state = 'acknowledged'"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--incidents", type=int, default=200_000, help="closed incidents of history")
    ap.add_argument("--residents", type=int, default=2000)
    ap.add_argument("--new", type=int, default=50, help="incidents raised between refreshes")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shg-carepath-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port(), fsync=False)
    db_pw, owner_pw = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(f"{base} user=safehome_owner password={owner_pw}") as conn:
            migrate(conn, app_role="safehome")
        conn = psycopg.connect(f"{base} user=safehome password={db_pw}", autocommit=True)
        apply_site_definition(conn, site_definition(args.residents))
        started = time.perf_counter()
        conn.execute(_HISTORY, {"n": args.incidents, "residents": args.residents})
        conn.execute("ANALYZE")
        seeded_s = time.perf_counter() - started
        events = conn.execute("SELECT count(*) FROM incident_events").fetchone()
        print(f"history: {args.incidents} incidents, {events[0] if events else 0} events "
              f"(seeded in {seeded_s:.1f} s)")  # fmt: skip

        collector = CarePathCollector(
            lambda: contextlib.nullcontext(conn), cache_s=0, gap_timeout_s=60
        )
        t0 = time.perf_counter()
        collector.refresh()  # the first read: where counting starts
        first_ms = (time.perf_counter() - t0) * 1000
        refresh_ms, naive_ms = [], []
        for k in range(args.rounds):
            _new_incidents(conn, args.new, args.residents, k)
            t0 = time.perf_counter()
            collector.refresh()
            refresh_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            for sql in _NAIVE:
                conn.execute(sql).fetchall()
            naive_ms.append((time.perf_counter() - t0) * 1000)
        counted = sum(n for (ev, _, _), n in collector.events.items() if ev == "raised")
        assert counted == args.new * args.rounds, (counted, args.new * args.rounds)
        conn.close()
    finally:
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)

    p50, p50_naive = statistics.median(refresh_ms), statistics.median(naive_ms)
    print(f"first refresh: {first_ms:.1f} ms")
    print(f"refresh with {args.new} new incidents: p50 {p50:.1f} ms, max {max(refresh_ms):.1f} ms")
    print(f"naive full-history scrape (baseline): p50 {p50_naive:.1f} ms")
    print(f"ratio naive / refresh at p50: {p50_naive / p50:.1f}")
    print(json.dumps({
        "incidents": args.incidents, "events": int(events[0]) if events else 0,
        "new_per_round": args.new, "rounds": args.rounds, "first_refresh_ms": round(first_ms, 2),
        "refresh_p50_ms": round(p50, 2), "refresh_max_ms": round(max(refresh_ms), 2),
        "naive_p50_ms": round(p50_naive, 2),
        "ratio_naive_to_refresh": round(p50_naive / p50, 2), "counted_ok": True,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
