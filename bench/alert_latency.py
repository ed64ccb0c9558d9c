"""Alert latency benchmark: emergency button press → incident on the staff live feed.

Real and private to the run: PostgreSQL + TimescaleDB, Mosquitto, the gateway as its own
process (ingest, analysis, workflow, API), and the background load of the ingest benchmark
(default 5,000 beds, each with a bed sensor and a wearable at 1 message/s, from the simulator in
its own process). While that load runs, ``--presses`` emergency buttons (each in another bed)
are pressed one after another; each press is timed from the moment the device publishes it to
the moment its ``raised`` incident event arrives on the SSE live feed (``/incidents/stream``),
read by a logged-in duty-staff client.

The last line printed is one JSON object: ``presses``, ``p50_ms``, ``p99_ms``, ``max_ms``,
``missed`` (presses with no incident within ``--timeout`` seconds) and
``background_msgs_per_s`` (messages the gateway received per second during the presses).

Baseline, measured in the same run under the same load: a bare MQTT subscriber (a read-only
monitoring account) receives the same presses straight from the broker; ``broker_p50_ms`` /
``broker_p99_ms`` are publish → delivery there, and ``p99_ratio_to_broker`` is how many times
that floor the full path (store, detect, raise, audit, notify the live feed) takes at p99.

``--under-attack`` runs two attacks during the presses (issue 10): ``--flood-devices`` extra
bed sensors flood their telemetry with payloads just under the device cap
(``--flood-payload-kb``) as fast as the broker takes them, and ``--login-workers`` threads
post bad sign-ins to ``/auth/token`` without pause. The JSON line then also carries the
flood's volume, how much of it was rate-limited, and the sign-in attempts by HTTP status.
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
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.flood import DeviceFlood, LoginFlood, metric
from bench.ingest import manifest, site_definition
from devices import protocol as p
from devices.manifest import save_manifest
from gateway.api.auth import create_user
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import apply_site_definition, device_accounts
from gateway.localsvc import MosquittoServer, PostgresServer, free_port
from gateway.storage.migrate import migrate

PREFIX = "shg"
SITE = "bench"


def add_buttons(definition: dict[str, Any], n: int) -> None:
    """One emergency button on each of the first ``n`` beds (its resident raises the call)."""
    for i in range(n):
        definition["devices"].append(
            {"id": f"bt{i}", "kind": "button", "model": "BT", "serial": f"bt{i}",
             "bed": f"b{i}", "location": f"l{i}"}
        )  # fmt: skip


def add_flooders(definition: dict[str, Any], n: int) -> None:
    """``n`` extra bed sensors (beds of their own) that flood their telemetry (--under-attack)."""
    for i in range(n):
        definition["locations"].append({"id": f"fl{i}", "kind": "room", "label": f"Flood {i}"})
        definition["beds"].append({"id": f"flb{i}", "code": f"BED-FL-{i}", "location": f"fl{i}"})
        definition["devices"].append(
            {"id": f"flood{i}", "kind": "bed_sensor", "model": "BS", "serial": f"flood{i}",
             "bed": f"flb{i}", "location": f"fl{i}"}
        )  # fmt: skip


def messages_total(api: str) -> float:
    with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("safehome_ingest_messages_total{")
    )


class BrokerBaseline:
    """Receives the presses straight from the broker (the baseline: delivery only)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.received: dict[str, float] = {}
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline",
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.username_pw_set(username, password)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{PREFIX}/v1/{SITE}/+/event", qos=1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.setdefault(msg.topic.split("/")[3], time.time())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


class FeedReader(threading.Thread):
    """Follows the SSE live feed; records when each resident's emergency call is raised."""

    def __init__(self, api: str, token: str) -> None:
        super().__init__(daemon=True)
        self.api, self.token = api, token
        self.raised: dict[str, float] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream("GET", f"{self.api}/incidents/stream", headers=headers) as resp,
        ):
            resp.raise_for_status()
            self.connected.set()
            for line in resp.iter_lines():
                if self.stop.is_set():
                    return
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event.get("kind") == "raised" and event.get("type") == "emergency_call":
                    self.raised.setdefault(str(event["resident_id"]), time.time())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--beds", type=int, default=5000, help="background beds (2 devices each)")
    ap.add_argument("--presses", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.4, help="seconds between presses")
    ap.add_argument(
        "--timeout", type=float, default=10.0, help="a press unseen this long is missed"
    )
    ap.add_argument("--under-attack", action="store_true", help="device flood + login flood")
    ap.add_argument("--flood-devices", type=int, default=4, help="with --under-attack")
    ap.add_argument("--flood-payload-kb", type=int, default=60, help="with --under-attack")
    ap.add_argument("--login-workers", type=int, default=40, help="with --under-attack")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shg-alert-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port())
    mq = MosquittoServer(root / "mq", free_port())
    procs: list[subprocess.Popen[bytes]] = []
    db_pw, owner_pw, gw_pw, staff_pw, mon_pw = (uuid.uuid4().hex for _ in range(5))
    try:
        pg.init()
        pg.start()
        # as in production: an owner role migrates, the gateway's role owns nothing
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(
            f"{base} user=safehome_owner password={owner_pw}", autocommit=True
        ) as conn:
            migrate(conn, app_role="safehome")
        definition = site_definition(args.beds)
        add_buttons(definition, args.presses)
        if args.under_attack:
            add_flooders(definition, args.flood_devices)
        with psycopg.connect(f"{base} user=safehome password={db_pw}", autocommit=True) as conn:
            creds = apply_site_definition(conn, definition)
            accounts = device_accounts(conn)
            create_user(conn, "duty", "duty_staff", staff_pw, site_id=SITE)
        monitor = ServiceAccount("bench-monitor", hash_password(mon_pw))
        mq.init(PREFIX, ServiceAccount("gateway", hash_password(gw_pw)), accounts, [monitor])
        mq.start()
        buttons = {c.device_id: c for c in creds if c.kind == "button"}
        flooders = [c for c in creds if c.device_id.startswith("flood")]
        background = [c for c in creds if c.kind != "button" and c not in flooders]
        bed_resident = {r["bed"]: r["id"] for r in definition["residents"]}

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
        api = f"http://127.0.0.1:{api_port}"
        with (root / "gateway.log").open("ab") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"], env=env,
                stdout=subprocess.DEVNULL, stderr=log,
            ))  # fmt: skip
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
        feed = FeedReader(api, token)
        feed.start()
        if not feed.connected.wait(10):
            raise RuntimeError("live feed did not connect")
        baseline = BrokerBaseline(mq.port, monitor.username, mon_pw)
        if not baseline.subscribed.wait(10):
            raise RuntimeError("baseline subscriber did not subscribe")

        # Background load: the ingest benchmark's devices, from the simulator's own process.
        manifest_path = root / "background.json"
        save_manifest(manifest(background, mq.port), manifest_path)
        sim_s = args.presses * args.interval + 40
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "simulate", "--manifest", str(manifest_path),
             "--duration", str(sim_s), "--heartbeat", "60"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        m0, t0 = messages_total(api), time.time()
        while messages_total(api) - m0 < 2 * len(background) and time.time() - t0 < 60:
            time.sleep(1)  # connection ramp: wait until the load is flowing

        clients = []
        for dev in buttons.values():
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev.device_id,
                            protocol=mqtt.MQTTv5)  # fmt: skip
            c.username_pw_set(dev.device_id, dev.password)
            c.connect("127.0.0.1", mq.port)
            c.loop_start()
            clients.append((dev, c))
        time.sleep(1)

        floods: list[DeviceFlood] = []
        logins: list[LoginFlood] = []
        if args.under_attack:
            floods = [DeviceFlood(mq.port, c, args.flood_payload_kb * 1000) for c in flooders]
            logins = [LoginFlood(api, "duty") for _ in range(args.login_workers)]
            for t in [*floods, *logins]:
                t.start()
            time.sleep(2)  # the attacks are under way before the first press

        pressed: dict[str, float] = {}
        pressed_dev: dict[str, float] = {}
        m1, w1 = messages_total(api), time.time()
        for seq, (dev, c) in enumerate(clients):
            now = time.time()
            payload = p.encode_event(
                dev.device_id, f"press-{uuid.uuid4().hex[:12]}", seq, int(now * 1000),
                event="press",
            )  # fmt: skip
            pressed[bed_resident[str(dev.bed_id)]] = pressed_dev[dev.device_id] = time.time()
            c.publish(f"{PREFIX}/v1/{SITE}/{dev.device_id}/event", payload, qos=1)
            time.sleep(args.interval)
        m2, w2 = messages_total(api), time.time()
        end = time.time() + args.timeout
        while time.time() < end and not set(pressed) <= set(feed.raised):
            time.sleep(0.1)
        attackers: list[DeviceFlood | LoginFlood] = [*floods, *logins]
        for t in attackers:
            t.stop.set()
        for t in attackers:
            t.join(30)
        feed.stop.set()
        baseline.close()
        for _, c in clients:
            c.disconnect()
            c.loop_stop()

        lat = [(feed.raised[r] - t) * 1000 for r, t in pressed.items() if r in feed.raised]
        floor = [
            (baseline.received[d] - t) * 1000
            for d, t in pressed_dev.items()
            if d in baseline.received
        ]
        missed = sum(1 for r in pressed if r not in feed.raised)
        p99, broker_p99 = _pct(lat, 99), _pct(floor, 99)
        result: dict[str, Any] = {
            "presses": len(pressed),
            "p50_ms": _pct(lat, 50),
            "p99_ms": p99,
            "max_ms": round(max(lat), 1) if lat else None,
            "missed": missed,
            "background_msgs_per_s": round((m2 - m1) / max(w2 - w1, 1e-9), 1),
            "background_devices": len(background),
            "broker_p50_ms": _pct(floor, 50),
            "broker_p99_ms": broker_p99,
            "p99_ratio_to_broker": round(p99 / broker_p99, 2) if p99 and broker_p99 else None,
        }
        if args.under_attack:
            statuses: dict[str, int] = {}
            for lf in logins:
                for code, n in lf.statuses.items():
                    statuses[str(code)] = statuses.get(str(code), 0) + n
            result |= {
                "under_attack": True,
                "flood_devices": len(floods),
                "flood_mb_sent": round(sum(f.sent_bytes for f in floods) / 1e6, 1),
                "flood_msgs_sent": sum(f.sent for f in floods),
                "flood_rate_limited": int(
                    metric(api, "safehome_ingest_dead_letters_total", 'reason="rate_limited"')
                ),
                "login_attempts": sum(lf.attempts for lf in logins),
                "login_statuses": statuses,
            }
        print(
            f"{result['presses']} presses: p50 {result['p50_ms']} ms, p99 {p99} ms, "
            f"max {result['max_ms']} ms, missed {missed}; background "
            f"{result['background_msgs_per_s']:,} msg/s from {len(background)} devices\n"
            f"baseline, same run: broker delivery to a bare subscriber p50 "
            f"{result['broker_p50_ms']} ms, p99 {broker_p99} ms; "
            f"gateway p99 / broker p99 = {result['p99_ratio_to_broker']}"
        )
        if args.under_attack:
            print(
                f"under attack: {result['flood_msgs_sent']} flood messages "
                f"({result['flood_mb_sent']} MB) from {len(floods)} devices, "
                f"{result['flood_rate_limited']} rate-limited; {result['login_attempts']} bad "
                f"sign-ins from {len(logins)} workers, statuses {result['login_statuses']}"
            )
        print(json.dumps(result))
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        mq.stop()
        pg.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
