"""Cost of the per-request session check (token revocation, issue 10 §3).

Every authenticated API request takes a pooled connection and runs
``auth_sessions.session_valid`` (one primary-key join of ``auth_sessions`` and ``users``).
This measures that, per call, against a private PostgreSQL with ``--sessions`` sessions
stored, next to a same-run baseline: a pooled ``SELECT 1`` (the cheapest possible round
trip). Prints the figures and, last, one JSON line.

    .venv/bin/python -m bench.auth_check [--calls 5000] [--sessions 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from gateway.api.auth import create_user
from gateway.localsvc import PostgresServer, free_port
from gateway.storage import auth_sessions
from gateway.storage.migrate import migrate


def _per_call_us(pool: ConnectionPool[Any], calls: int, fn: Callable[[Any], object]) -> float:
    """Median over 5 rounds of the mean time per call, microseconds."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls // 5):
            with pool.connection() as conn:
                fn(conn)
        rounds.append((time.perf_counter() - t0) / (calls // 5) * 1e6)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=10000, help="sessions stored")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shg-authcheck-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port(), fsync=False)
    owner_pw, db_pw = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(f"{base} user=safehome_owner password={owner_pw}") as conn:
            migrate(conn, app_role="safehome")
        app = f"{base} user=safehome password={db_pw}"
        with psycopg.connect(app, autocommit=True) as conn:
            uid = create_user(conn, "admin", "admin", "pw-" + uuid.uuid4().hex)
            sid = ""
            for _ in range(args.sessions):
                sid, _, _ = auth_sessions.open_session(conn, uid, 3600, 3600)
        with ConnectionPool(app, min_size=2, max_size=2, kwargs={"autocommit": True}) as pool:
            pool.wait()
            baseline = _per_call_us(pool, args.calls, lambda c: c.execute("SELECT 1").fetchone())
            params = _per_call_us(
                pool, args.calls, lambda c: c.execute("SELECT %s::text", (sid,)).fetchone()
            )
            check = _per_call_us(
                pool, args.calls, lambda c: auth_sessions.session_valid(c, sid, uid)
            )
    finally:
        pg.stop(mode="immediate")
    print(f"pooled SELECT 1 (baseline): {baseline:.1f} µs per call")
    print(f"pooled SELECT %s (one parameter): {params:.1f} µs per call")
    print(f"session check ({args.sessions} sessions stored): {check:.1f} µs per request")
    print(f"ratio to baseline: {check / baseline:.2f} (to the one-parameter query: "
          f"{check / params:.2f})")  # fmt: skip
    result = {
        "bench": "auth_check", "calls": args.calls, "sessions": args.sessions,
        "baseline_us": round(baseline, 1), "param_us": round(params, 1),
        "check_us": round(check, 1), "ratio": round(check / baseline, 2),
        "ratio_to_param": round(check / params, 2),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
