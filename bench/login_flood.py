"""Login flood benchmark: the staff console's latency while the sign-in route is flooded.

Real and private to the run: PostgreSQL + TimescaleDB, Mosquitto and the gateway as its own
process. A signed-in duty-staff client reads ``GET /incidents`` one request after another,
first alone (the same-run baseline), then while ``--threads`` attackers send wrong passwords
as fast as they can (issue 10 §3: 40 parallel bad sign-ins used to slow this read from 40 ms
to 3.3 s, and 149 failures in 16 s drew no 429).

The attackers are spread over ``--addresses`` loopback source addresses (127.0.1.x, rotated
whenever one is throttled) and guess random user names as well as a real one, so the
per-address and per-user throttles alone cannot stop them: what keeps the console fast is
that password hashing holds no database connection and runs under
``api.login_hash_concurrency``. :class:`LoginFlood` is reusable (``bench/alert_latency``'s
``--under-attack`` can run it next to the device flood).

The last line is one JSON object: console p50/p99 alone and under the flood, their ratio,
and how the sign-ins were answered (401, 429, other).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psycopg

from gateway.api.auth import create_user
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import apply_site_definition
from gateway.localsvc import MosquittoServer, PostgresServer, free_port
from gateway.storage.migrate import migrate


class LoginFlood:
    """``threads`` attackers sending wrong passwords to ``api`` until :meth:`stop`."""

    def __init__(self, api: str, threads: int, addresses: int, usernames: list[str]) -> None:
        self.api = api
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_address = 0
        self._addresses = addresses
        self._usernames = usernames
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _address(self) -> str:
        with self._lock:
            self._next_address = self._next_address % self._addresses + 1
            n = self._next_address
        return f"127.0.{1 + n // 250}.{n % 250 + 1}"

    def _run(self) -> None:
        rng = np.random.default_rng()
        while not self._stop.is_set():
            transport = httpx.HTTPTransport(local_address=self._address())
            with httpx.Client(base_url=self.api, transport=transport, timeout=60) as client:
                while not self._stop.is_set():
                    name = (
                        self._usernames[int(rng.integers(len(self._usernames)))]
                        if rng.random() < 0.5 else "guess-" + uuid.uuid4().hex[:8]
                    )  # fmt: skip
                    form = {"username": name, "password": uuid.uuid4().hex}
                    try:
                        status = client.post("/auth/token", data=form).status_code
                    except httpx.HTTPError:
                        status = 0
                    with self._lock:
                        self.answers[status] += 1
                    if status == 429:
                        break  # this address is throttled: come back from another one

    def __enter__(self) -> LoginFlood:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    @property
    def attempts(self) -> int:
        with self._lock:
            return sum(self.answers.values())


def _console(api: str, token: str, seconds: float) -> list[float]:
    """Back-to-back authenticated GET /incidents for ``seconds``; latencies in ms."""
    out = []
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            resp = c.get("/incidents", timeout=60)
            out.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"console read failed: {resp.status_code}")
            time.sleep(0.05)
    return out


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=40, help="parallel attackers")
    ap.add_argument("--addresses", type=int, default=200, help="source addresses they use")
    ap.add_argument("--seconds", type=float, default=15.0, help="per phase")
    ap.add_argument("--hash-concurrency", type=int, default=None, help="api.login_hash_concurrency")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shg-loginflood-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port(), fsync=False)
    mq = MosquittoServer(root / "mq", free_port())
    proc: subprocess.Popen[bytes] | None = None
    db_pw, owner_pw, gw_pw, staff_pw = (uuid.uuid4().hex for _ in range(4))
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(f"{base} user=safehome_owner password={owner_pw}") as conn:
            migrate(conn, app_role="safehome")
        with psycopg.connect(f"{base} user=safehome password={db_pw}", autocommit=True) as conn:
            apply_site_definition(
                conn, {"site": {"id": "bench", "name": "Bench", "kind": "nursing_home"}}
            )
            create_user(conn, "duty", "duty_staff", staff_pw, site_id="bench")
            for i in range(5):
                create_user(conn, f"nurse{i}", "duty_staff", uuid.uuid4().hex, site_id="bench")
        mq.init("shg", ServiceAccount("gateway", hash_password(gw_pw)), [])
        mq.start()
        api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")} | {
            "SAFEHOME_DATABASE__PORT": str(pg.port),
            "SAFEHOME_DATABASE__PASSWORD": db_pw,
            "SAFEHOME_MQTT__PORT": str(mq.port),
            "SAFEHOME_MQTT__PASSWORD": gw_pw,
            "SAFEHOME_API__PORT": str(api_port),
            "SAFEHOME_API__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "SAFEHOME_LOG__LEVEL": "WARNING",
        }
        if args.hash_concurrency is not None:
            env["SAFEHOME_API__LOGIN_HASH_CONCURRENCY"] = str(args.hash_concurrency)
        api = f"http://127.0.0.1:{api_port}"
        with (root / "gateway.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"], env=env,
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=1) as r:  # noqa: S310
                    if json.loads(r.read())["broker_connected"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.2)
        token = httpx.post(
            f"{api}/auth/token", data={"username": "duty", "password": staff_pw}, timeout=10
        ).json()["access_token"]
        alone = _console(api, token, args.seconds)
        users = ["duty"] + [f"nurse{i}" for i in range(5)]
        with LoginFlood(api, args.threads, args.addresses, users) as flood:
            flooded = _console(api, token, args.seconds)
        answers = dict(flood.answers)
        result = {
            "console_alone_p50_ms": _pct(alone, 50),
            "console_alone_p99_ms": _pct(alone, 99),
            "console_flood_p50_ms": _pct(flooded, 50),
            "console_flood_p99_ms": _pct(flooded, 99),
            "p50_ratio_to_alone": round(_pct(flooded, 50) / max(_pct(alone, 50), 0.1), 2),
            "sign_ins": flood.attempts,
            "sign_ins_per_s": round(flood.attempts / args.seconds, 1),
            "answered_401": answers.get(401, 0),
            "answered_429": answers.get(429, 0),
            "answered_other": sum(v for k, v in answers.items() if k not in (401, 429)),
            "threads": args.threads,
            "addresses": args.addresses,
        }
        print(
            f"console GET /incidents alone: p50 {result['console_alone_p50_ms']} ms, p99 "
            f"{result['console_alone_p99_ms']} ms; during {args.threads} flooding threads "
            f"over {args.addresses} addresses: p50 {result['console_flood_p50_ms']} ms, p99 "
            f"{result['console_flood_p99_ms']} ms (p50 ratio {result['p50_ratio_to_alone']})\n"
            f"sign-ins: {flood.attempts} ({result['sign_ins_per_s']}/s): "
            f"401 {result['answered_401']}, 429 {result['answered_429']}, "
            f"other {result['answered_other']}"
        )
        print(json.dumps(result))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if mq.running():
            mq.stop()
        pg.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
