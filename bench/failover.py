"""Failover benchmark: how long an active/standby gateway pair takes to hand over after
``kill -9`` of the active, and whether any alarm is lost on the way (issue 15 §1).

Real and private to the run: PostgreSQL + TimescaleDB, Mosquitto and two gateway processes
with ``failover.enabled`` (default failover timings). ``--kills`` times (default 10): kill the
active with SIGKILL, press ``--presses-per-kill`` emergency buttons right away (each in its own
bed: each must become its own incident), and time

* ``takeover_s``: the kill → the standby's MQTT session connected (it holds the lease, its
  analysis state is rebuilt and its ingest runs);
* ``alarm_s``: the first press after the kill → its incident in the database;

then restart the killed process, which comes back as the standby. ``--freezes`` times
(default 2) the active is frozen instead (SIGSTOP, the zombie leader): ``freeze_takeover_s``
is the time to the standby's MQTT session (bounded below by ``failover.takeover_after_s``),
after which the frozen process is woken (SIGCONT) and must exit fenced (status 75,
``fenced``). At the end every press must
have exactly one incident: ``lost`` and ``duplicates`` (target 0).

Baseline, measured in the same run on the same database and broker: a single gateway without
failover killed with SIGKILL and started again by hand (what a supervisor's restart costs at
best: a new Python process, start-up, rebuild) — ``restart_s``, ``--baseline`` times.
``takeover_ratio_to_restart`` is p50 takeover / p50 restart.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import site_definition
from devices import protocol as p
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import DeviceCredential, apply_site_definition, device_accounts
from gateway.lease import EXIT_LEASE_LOST
from gateway.localsvc import MosquittoServer, PostgresServer, free_port
from gateway.storage.migrate import migrate

PREFIX = "shg"
SITE = "bench"


class Gateway:
    """One gateway process with its own JSON log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def count(self, message: str) -> int:
        n = 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("msg") == message:
                    n += 1
            except ValueError:
                continue
        return n

    def wait_for(self, message: str, timeout_s: float, at_least: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(message) < at_least:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}): {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {message!r} within {timeout_s}s: {self.log_path}")
            time.sleep(0.02)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


class Buttons:
    """Connected emergency buttons; ``press`` returns once the broker has the press."""

    def __init__(self, port: int, creds: list[DeviceCredential]) -> None:
        self.creds = creds
        self.clients: list[mqtt.Client] = []
        for c in creds:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=c.device_id, protocol=mqtt.MQTTv5
            )
            client.username_pw_set(c.device_id, c.password)
            client.connect("127.0.0.1", port, keepalive=30)
            client.loop_start()
            self.clients.append(client)
        self.pressed = 0

    def press(self) -> str:
        """Press the next button; return its resident's bed id."""
        i = self.pressed
        cred, client = self.creds[i], self.clients[i]
        payload = p.encode_event(
            cred.device_id, f"press-{i}", 1, int(time.time() * 1000), event="press"
        )
        info = client.publish(f"{PREFIX}/v1/{SITE}/{cred.device_id}/event", payload, qos=1)
        info.wait_for_publish(10)
        self.pressed += 1
        assert cred.bed_id is not None
        return cred.bed_id

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10, help="kills of the active")
    ap.add_argument("--presses-per-kill", type=int, default=2)
    ap.add_argument("--freezes", type=int, default=2, help="SIGSTOPs of the active")
    ap.add_argument("--baseline", type=int, default=3, help="plain restarts (no failover)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shg-failover-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port())
    mq = MosquittoServer(root / "mq", free_port())
    gateways: list[Gateway] = []
    buttons: Buttons | None = None
    db_pw, owner_pw, gw_pw = (uuid.uuid4().hex for _ in range(3))
    n_buttons = 1 + (args.kills + args.freezes) * args.presses_per_kill
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(f"{base} user=safehome_owner password={owner_pw}") as conn:
            migrate(conn, app_role="safehome")
        definition = site_definition(n_buttons)
        definition["devices"] = [
            {"id": f"bt{i}", "kind": "button", "model": "BT", "serial": f"bt{i}",
             "bed": f"b{i}", "location": f"l{i}"}
            for i in range(n_buttons)
        ]  # fmt: skip
        app = f"{base} user=safehome password={db_pw}"
        with psycopg.connect(app, autocommit=True) as conn:
            creds = apply_site_definition(conn, definition)
            accounts = device_accounts(conn)
        mq.init(PREFIX, ServiceAccount("gateway", hash_password(gw_pw)), accounts, [])
        mq.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")} | {
            "SAFEHOME_DATABASE__PORT": str(pg.port),
            "SAFEHOME_DATABASE__PASSWORD": db_pw,
            "SAFEHOME_MQTT__PORT": str(mq.port),
            "SAFEHOME_MQTT__PASSWORD": gw_pw,
            "SAFEHOME_API__PORT": "0",
            "SAFEHOME_API__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "SAFEHOME_LOG__FORMAT": "json",
        }
        buttons = Buttons(mq.port, sorted(creds, key=lambda c: int(c.device_id[2:])))

        # Baseline: one gateway, no failover, killed and started again.
        restarts: list[float] = []
        gw = Gateway(env, root / "single-0.log")
        gateways.append(gw)
        gw.wait_for("broker connected", 60)
        for i in range(args.baseline):
            killed = time.monotonic()
            gw.kill()
            gw = Gateway(env, root / f"single-{i + 1}.log")
            gateways.append(gw)
            gw.wait_for("broker connected", 60)
            restarts.append(time.monotonic() - killed)
            print(f"plain restart {i + 1}: {restarts[-1]:.2f} s", flush=True)
        gw.stop()

        # The pair.
        fo = env | {"SAFEHOME_FAILOVER__ENABLED": "true"}
        active = Gateway(fo, root / "pair-0.log")
        gateways.append(active)
        active.wait_for("broker connected", 60)
        standby = Gateway(fo, root / "pair-1.log")
        gateways.append(standby)
        standby.wait_for("standby: waiting for the lease", 60)
        buttons.press()
        takeovers: list[float] = []
        alarm_delays: list[float] = []
        for k in range(args.kills):
            killed = time.monotonic()
            active.kill()
            beds = [buttons.press() for _ in range(args.presses_per_kill)]
            pressed = time.monotonic()
            standby.wait_for("broker connected", 60)
            takeovers.append(time.monotonic() - killed)
            with psycopg.connect(app, autocommit=True) as conn:
                while not conn.execute(
                    "SELECT 1 FROM incidents i JOIN residents r USING (resident_id) "
                    "WHERE r.bed_id = %s",
                    (beds[0],),
                ).fetchone():
                    if time.monotonic() - pressed > 60:
                        raise TimeoutError("no incident for a press after a takeover")
                    time.sleep(0.02)
            alarm_delays.append(time.monotonic() - pressed)
            print(
                f"kill {k + 1}: takeover {takeovers[-1]:.2f} s, "
                f"press → incident {alarm_delays[-1]:.2f} s",
                flush=True,
            )
            # The killed process comes back (as its supervisor would restart it): the standby.
            active, standby = standby, Gateway(fo, root / f"pair-{k + 2}.log")
            gateways.append(standby)
            standby.wait_for("standby: waiting for the lease", 60)

        freezes: list[float] = []
        fenced = 0
        for k in range(args.freezes):
            frozen = time.monotonic()
            active.proc.send_signal(signal.SIGSTOP)
            for _ in range(args.presses_per_kill):
                buttons.press()
            standby.wait_for("broker connected", 60)
            freezes.append(time.monotonic() - frozen)
            active.proc.send_signal(signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                fenced += active.proc.wait(30) == EXIT_LEASE_LOST
            print(f"freeze {k + 1}: takeover {freezes[-1]:.2f} s", flush=True)
            n = args.kills + k + 2
            active, standby = standby, Gateway(fo, root / f"pair-{n}.log")
            gateways.append(standby)
            standby.wait_for("standby: waiting for the lease", 60)

        deadline = time.monotonic() + 60
        with psycopg.connect(app, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(DISTINCT resident_id), count(*) FROM incidents "
                    "WHERE type = 'emergency_call'"
                ).fetchone()
                assert row is not None
                residents, incidents = int(row[0]), int(row[1])
                if residents >= buttons.pressed or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            time.sleep(1.0)
            row = conn.execute(
                "SELECT count(DISTINCT resident_id), count(*), coalesce(sum(trigger_count), 0) "
                "FROM incidents WHERE type = 'emergency_call'"
            ).fetchone()
            assert row is not None
        residents, incidents, triggers = int(row[0]), int(row[1]), int(row[2])
        result: dict[str, Any] = {
            "kills": args.kills,
            "takeover_p50_s": round(statistics.median(takeovers), 3),
            "takeover_max_s": round(max(takeovers), 3),
            "alarm_after_kill_p50_s": round(statistics.median(alarm_delays), 3),
            "alarm_after_kill_max_s": round(max(alarm_delays), 3),
            "freezes": args.freezes,
            "freeze_takeover_p50_s": round(statistics.median(freezes), 3) if freezes else None,
            "freeze_takeover_max_s": round(max(freezes), 3) if freezes else None,
            "fenced": fenced,
            "presses": buttons.pressed,
            "lost": buttons.pressed - residents,
            "duplicates": (incidents - residents) + (triggers - incidents),
            "restart_p50_s": round(statistics.median(restarts), 3) if restarts else None,
            "takeover_ratio_to_restart": (
                round(statistics.median(takeovers) / statistics.median(restarts), 3)
                if restarts
                else None
            ),
        }
        print(
            f"takeover p50 {result['takeover_p50_s']} s, max {result['takeover_max_s']} s over "
            f"{args.kills} kills; frozen: max {result['freeze_takeover_max_s']} s, "
            f"fenced {fenced}/{args.freezes}; plain restart p50 {result['restart_p50_s']} s "
            f"(ratio {result['takeover_ratio_to_restart']}); presses {buttons.pressed}, "
            f"lost {result['lost']}, duplicates {result['duplicates']}"
        )
        print(json.dumps(result))
    finally:
        if buttons is not None:
            buttons.close()
        for g in gateways:
            g.stop()
        mq.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
