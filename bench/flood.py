"""Flood benchmark: the gateway's memory and other devices' alarm latency while devices flood it
with 1 MB payloads and the database hangs (issue 10 §2).

Real and private to the run: PostgreSQL + TimescaleDB, Mosquitto, the gateway as its own
process. The broker and the gateway are configured to let 1 MB payloads through
(``ingest.max_payload_bytes`` above the flood's size: "whatever the broker sends"), so what
bounds the gateway's memory is its byte budget (``mqtt.max_inflight_bytes``) and what keeps
alarms flowing is the per-device rate limit and the event lane.

Phases, one run:

1. **baseline**: ``--presses`` emergency buttons pressed one after another with no flood;
   each press is timed from publish to its ``raised`` incident on the SSE live feed.
2. **flood, database paused**: ``--flooders`` devices publish ``--payload-kb`` KB telemetry as
   fast as the broker takes it while PostgreSQL (server and backends) is SIGSTOPped for
   ``--pause`` seconds; the gateway's RSS (``/proc/<pid>/status``) is sampled every 0.2 s.
3. **flood, database back**: the flood goes on; the same number of presses, timed the same way.

Printed: RSS before / peak / growth against the byte budget, alarm p50/p99 in both phases and
their ratio (flood p99 / baseline p99, same run), flood volume, rate-limited and
backpressure counts. The last line is one JSON object.

The flood and login-flood generators here are also used by ``bench.alert_latency
--under-attack``.
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
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devices import protocol as p
from gateway.api.auth import create_user
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import apply_site_definition, device_accounts
from gateway.localsvc import MosquittoServer, PostgresServer, free_port
from gateway.settings import MQTT_PACKET_OVERHEAD
from gateway.storage.migrate import migrate

PREFIX = "shg"
SITE = "bench"


class DeviceFlood(threading.Thread):
    """One device publishing padded telemetry (QoS 1) as fast as the broker acknowledges it."""

    def __init__(self, port: int, cred: Any, payload_bytes: int, site: str = SITE) -> None:
        super().__init__(daemon=True)
        self.cred, self.port, self.payload_bytes, self.site = cred, port, payload_bytes, site
        self.stop = threading.Event()
        self.sent = 0
        self.sent_bytes = 0
        self.refused = 0

    def _payload(self, i: int) -> bytes:
        d = self.cred.device_id
        obj = orjson.loads(p.encode_heartbeat(d, f"fl-{i}", i, int(time.time() * 1000)))
        obj["pad"] = ""
        room = self.payload_bytes - len(orjson.dumps(obj))
        obj["pad"] = "x" * max(0, room)
        return orjson.dumps(obj)

    def run(self) -> None:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.cred.device_id, protocol=mqtt.MQTTv5
        )
        c.username_pw_set(self.cred.device_id, self.cred.password)
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        topic = f"{PREFIX}/v1/{self.site}/{self.cred.device_id}/telemetry"
        pad = self._payload(0)
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                info = c.publish(topic, pad, qos=1)
                try:
                    info.wait_for_publish(5)
                except (RuntimeError, ValueError):
                    self.refused += 1
                    time.sleep(0.5)
                    continue
                if info.is_published():
                    self.sent += 1
                    self.sent_bytes += len(pad)
                else:
                    self.refused += 1
        finally:
            c.disconnect()
            c.loop_stop()


class LoginFlood(threading.Thread):
    """Bad sign-ins to ``/auth/token`` as fast as the API answers (one worker)."""

    def __init__(self, api: str, username: str) -> None:
        super().__init__(daemon=True)
        self.api, self.username = api, username
        self.stop = threading.Event()
        self.attempts = 0
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(
                        f"{self.api}/auth/token",
                        data={"username": self.username, "password": uuid.uuid4().hex},
                    )
                    self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    self.statuses[0] = self.statuses.get(0, 0) + 1
                self.attempts += 1


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric(api: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    key = f"{name}{{{labels}}}" if labels else name
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(key + " "))


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


class Feed(threading.Thread):
    """Follows the SSE live feed; records when each resident's emergency call is raised."""

    def __init__(self, api: str, token: str) -> None:
        super().__init__(daemon=True)
        self.api, self.token = api, token
        self.raised: dict[str, float] = {}
        self.connected = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream("GET", f"{self.api}/incidents/stream", headers=headers) as resp,
        ):
            resp.raise_for_status()
            self.connected.set()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event.get("kind") == "raised" and event.get("type") == "emergency_call":
                        self.raised.setdefault(str(event["resident_id"]), time.time())


def press_round(
    port: int, buttons: list[Any], resident_of: dict[str, str], feed: Feed, *,
    interval_s: float, timeout_s: float, tag: str,
) -> tuple[list[float], int]:  # fmt: skip
    """Press each button once; latencies (ms) to the raised incident, and how many were missed."""
    clients = []
    for dev in buttons:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev.device_id,
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.username_pw_set(dev.device_id, dev.password)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((dev, c))
    time.sleep(0.5)
    pressed: dict[str, float] = {}
    for seq, (dev, c) in enumerate(clients):
        now = time.time()
        payload = p.encode_event(dev.device_id, f"{tag}-{uuid.uuid4().hex[:10]}", seq,
                                 int(now * 1000), event="press")  # fmt: skip
        pressed[resident_of[dev.device_id]] = now
        c.publish(f"{PREFIX}/v1/{SITE}/{dev.device_id}/event", payload, qos=1)
        time.sleep(interval_s)
    end = time.time() + timeout_s
    while time.time() < end and not set(pressed) <= set(feed.raised):
        time.sleep(0.1)
    for _, c in clients:
        c.disconnect()
        c.loop_stop()
    lat = [(feed.raised[r] - t) * 1000 for r, t in pressed.items() if r in feed.raised]
    return lat, sum(1 for r in pressed if r not in feed.raised)


def definition(presses: int, flooders: int) -> dict[str, Any]:
    """A site with a bed (and resident) per button (``presses`` for each of the two phases, so
    no incident of the first is still open in the second) and per flooder (a bed sensor)."""
    locs, beds, residents, devices = [], [], [], []
    for i in range(2 * presses + flooders):
        locs.append({"id": f"l{i}", "kind": "room", "label": f"Room {i}"})
        beds.append({"id": f"b{i}", "code": f"BED-{i:05d}", "location": f"l{i}"})
        residents.append({"id": f"r{i}", "code": f"ELD-{i:05d}", "name": f"Resident {i}",
                          "bed": f"b{i}", "care_level": 2})  # fmt: skip
        kind, dev = ("button", f"bt{i}") if i < 2 * presses else ("bed_sensor", f"fl{i}")
        devices.append({"id": dev, "kind": kind, "model": "X", "serial": dev, "bed": f"b{i}",
                        "location": f"l{i}"})  # fmt: skip
    return {
        "site": {"id": SITE, "name": "Flood bench", "kind": "nursing_home"},
        "locations": locs, "beds": beds, "residents": residents, "devices": devices,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presses", type=int, default=30, help="presses per phase")
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between presses")
    ap.add_argument("--flooders", type=int, default=4, help="flooding devices")
    ap.add_argument("--payload-kb", type=int, default=1000, help="flood payload size (KB)")
    ap.add_argument("--pause", type=float, default=15.0, help="seconds the database is paused")
    ap.add_argument("--budget-mb", type=int, default=32, help="mqtt.max_inflight_bytes (MiB)")
    ap.add_argument("--timeout", type=float, default=30.0, help="a press unseen this long: missed")
    args = ap.parse_args()

    payload = args.payload_kb * 1000
    cap = payload + 64 * 1024
    root = Path(tempfile.mkdtemp(prefix="shg-flood-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port())
    mq = MosquittoServer(root / "mq", free_port(), max_packet_size=cap + MQTT_PACKET_OVERHEAD)
    procs: list[subprocess.Popen[bytes]] = []
    floods: list[DeviceFlood] = []
    paused: list[int] = []
    db_pw, owner_pw, gw_pw, staff_pw = (uuid.uuid4().hex for _ in range(4))
    try:
        pg.init()
        pg.start()
        pg.ensure_database(
            "safehome", "safehome_owner", owner_pw, app_user="safehome", app_password=db_pw
        )
        base = f"host=127.0.0.1 port={pg.port} dbname=safehome"
        with psycopg.connect(f"{base} user=safehome_owner password={owner_pw}",
                             autocommit=True) as conn:  # fmt: skip
            migrate(conn, app_role="safehome")
        site = definition(args.presses, args.flooders)
        with psycopg.connect(f"{base} user=safehome password={db_pw}", autocommit=True) as conn:
            creds = apply_site_definition(conn, site)
            accounts = device_accounts(conn)
            create_user(conn, "duty", "duty_staff", staff_pw, site_id=SITE)
        mq.init(PREFIX, ServiceAccount("gateway", hash_password(gw_pw)), accounts)
        mq.start()
        buttons = sorted(
            (c for c in creds if c.kind == "button"), key=lambda c: int(c.device_id[2:])
        )
        flooders = [c for c in creds if c.kind == "bed_sensor"]
        resident_of = {f"bt{i}": f"r{i}" for i in range(2 * args.presses)}

        api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")} | {
            "SAFEHOME_DATABASE__PORT": str(pg.port),
            "SAFEHOME_DATABASE__PASSWORD": db_pw,
            "SAFEHOME_DATABASE__RETRY_MAX_S": "1",
            "SAFEHOME_MQTT__PORT": str(mq.port),
            "SAFEHOME_MQTT__PASSWORD": gw_pw,
            "SAFEHOME_MQTT__MAX_INFLIGHT_BYTES": str(args.budget_mb * 1024 * 1024),
            "SAFEHOME_INGEST__MAX_PAYLOAD_BYTES": str(cap),
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
        gw_pid = procs[0].pid
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
        feed = Feed(api, token)
        feed.start()
        if not feed.connected.wait(10):
            raise RuntimeError("live feed did not connect")

        # 1. baseline
        base_lat, base_missed = press_round(
            mq.port, buttons[: args.presses], resident_of, feed,
            interval_s=args.interval, timeout_s=args.timeout, tag="base",
        )  # fmt: skip
        time.sleep(1)
        rss_before = rss_kb(gw_pid)

        # 2. flood with the database paused
        floods = [DeviceFlood(mq.port, c, payload) for c in flooders]
        for f in floods:
            f.start()
        paused = pg.pause()
        peak = rss_before
        t_end = time.monotonic() + args.pause
        while time.monotonic() < t_end:
            peak = max(peak, rss_kb(gw_pid))
            time.sleep(0.2)
        sent_paused = sum(f.sent_bytes for f in floods)
        pg.resume(paused)
        paused = []

        # 3. presses while the flood goes on
        flood_lat, flood_missed = press_round(
            mq.port, buttons[args.presses :], resident_of, feed,
            interval_s=args.interval, timeout_s=args.timeout, tag="flood",
        )  # fmt: skip
        peak = max(peak, rss_kb(gw_pid))
        for f in floods:
            f.stop.set()
        for f in floods:
            f.join(30)
        limited = metric(api, "safehome_ingest_dead_letters_total", 'reason="rate_limited"')
        oversized = metric(api, "safehome_ingest_dead_letters_total", 'reason="oversized"')

        b99, f99 = pct(base_lat, 99), pct(flood_lat, 99)
        result = {
            "presses_per_phase": args.presses,
            "baseline_p50_ms": pct(base_lat, 50),
            "baseline_p99_ms": b99,
            "baseline_missed": base_missed,
            "flood_p50_ms": pct(flood_lat, 50),
            "flood_p99_ms": f99,
            "flood_missed": flood_missed,
            "p99_ratio_to_baseline": round(f99 / b99, 2) if f99 and b99 else None,
            "rss_before_mb": round(rss_before / 1024, 1),
            "rss_peak_mb": round(peak / 1024, 1),
            "rss_growth_mb": round((peak - rss_before) / 1024, 1),
            "budget_mb": args.budget_mb,
            "flooders": args.flooders,
            "payload_kb": args.payload_kb,
            "flood_mb_sent": round(sum(f.sent_bytes for f in floods) / 1e6, 1),
            "flood_mb_sent_while_db_paused": round(sent_paused / 1e6, 1),
            "db_paused_s": args.pause,
            "rate_limited": int(limited),
            "oversized": int(oversized),
        }
        print(
            f"gateway RSS {result['rss_before_mb']} MB before, peak {result['rss_peak_mb']} MB "
            f"(+{result['rss_growth_mb']} MB; byte budget {args.budget_mb} MiB) while "
            f"{result['flood_mb_sent_while_db_paused']} MB of {args.payload_kb} KB payloads "
            f"reached the broker with the database paused {args.pause:g} s\n"
            f"alarms, baseline: p50 {result['baseline_p50_ms']} ms, p99 {b99} ms, missed "
            f"{base_missed}; during the flood: p50 {result['flood_p50_ms']} ms, p99 {f99} ms, "
            f"missed {flood_missed}; ratio p99 {result['p99_ratio_to_baseline']}\n"
            f"flood: {result['flood_mb_sent']} MB sent, {int(limited)} messages rate-limited"
        )
        print(json.dumps(result))
    finally:
        if paused:
            pg.resume(paused)
        for f in floods:
            f.stop.set()
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
