"""Ingest benchmark: simulated devices → Mosquitto → gateway → TimescaleDB, end to end.

Everything is real and private to the run: a PostgreSQL + TimescaleDB and a Mosquitto on free
ports (the project's own configuration), the gateway as its own process, the simulator with
one MQTT connection and password per device.

Phases, all on the same broker:

1. **Backlog.** The gateway's and a bare paho subscriber's persistent sessions are created,
   then both go away while the devices publish for ``--backlog-seconds``: the broker queues
   every message for both sessions.
2. **Baseline.** A bare paho-mqtt QoS 1 subscriber (no decoding, no storage) drains its
   queue: ``baseline_paho_qos1_msgs_per_s``, the Python MQTT receive ceiling on this machine.
3. **Drain.** The gateway starts and stores its queue: ``drain_msgs_per_s`` is its capacity
   (receive + decode + COPY + commit + ack), ``ratio_to_baseline`` = drain / baseline.
4. **Sustained.** The devices stream at a realistic rate for ``--duration`` seconds while the
   gateway runs: ``msgs_per_s`` (stored per second), ``p50_ms``/``p99_ms`` publish →
   committed (probe devices publish events stamped at the real publish time and time the
   gateway's application ack, which is sent only after the commit), ``lost``
   (broker-acknowledged minus stored), ``gateway_cpu_pct`` (percent of one core).
   ``sample_age_p50_ms``/``p99_ms`` is the gateway's own lag histogram (device timestamp to
   commit): when the load generator falls behind it also counts how late the generator is. The
   probes are events, so with ``ingest.event_lane`` on (the default) ``p50_ms``/``p99_ms``
   time the event lane; telemetry's own latency is the sample age.

Default load: 5,000 beds, each with a bed sensor and a wearable (10,000 connections), each
device sending 2 messages a second (vitals / accelerometer batches of 25 samples at 50 Hz), so
20,000 msg/s: about 10,000 residents at 2 messages a second. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
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

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.manifest import ManifestDevice, SiteManifest
from devices.protocol import DeviceKind, RowKind, decode_ack, encode_event
from devices.simulator import SimulationConfig, SimulationReport, run_simulation
from devices.transport import BrokerEndpoint
from gateway.brokerauth import ServiceAccount, hash_password
from gateway.commissioning import apply_site_definition, device_accounts
from gateway.localsvc import MosquittoServer, PostgresServer, free_port
from gateway.storage.migrate import migrate

PREFIX = "shg"
TABLES = ("readings", "accel", "device_events", "device_state")


def site_definition(beds: int) -> dict[str, Any]:
    locs, bed_rows, residents, devices = [], [], [], []
    for i in range(beds):
        loc, bed, res = f"l{i}", f"b{i}", f"r{i}"
        locs.append({"id": loc, "kind": "room", "label": f"Room {i}"})
        bed_rows.append({"id": bed, "code": f"BED-{i:06d}", "location": loc})
        residents.append(
            {"id": res, "code": f"ELD-{i:06d}", "name": f"R{i}", "bed": bed, "care_level": 2}
        )
        devices.append({"id": f"bs{i}", "kind": "bed_sensor", "model": "BS", "serial": f"bs{i}",
                        "bed": bed, "location": loc})  # fmt: skip
        devices.append({"id": f"wr{i}", "kind": "wearable", "model": "WR", "serial": f"wr{i}",
                        "resident": res, "location": loc})  # fmt: skip
    return {
        "site": {"id": "bench", "name": "Bench", "kind": "nursing_home"},
        "locations": locs,
        "beds": bed_rows,
        "residents": residents,
        "devices": devices,
    }


def stored_total(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        total = 0
        for t in TABLES:
            # Latency probes (CommitProbe) are not part of the simulated load.
            where = " WHERE msg_id NOT LIKE 'probe-%'" if t == "device_events" else ""
            row = conn.execute(f"SELECT count(*) FROM {t}{where}").fetchone()  # noqa: S608
            total += int(row[0]) if row else 0
        return total


def wait_total(conninfo: str, target: int, timeout_s: float) -> float:
    """Poll until ``target`` rows are stored; return the time it happened (or timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stored_total(conninfo) >= target:
            return time.time()
        time.sleep(0.1)
    return time.time()


class BareSubscriber:
    """A bare paho QoS 1 subscriber (auto PUBACK): the receive-rate baseline."""

    def __init__(self, port: int, password: str) -> None:
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self.done = threading.Event()
        self.target = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-baseline", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set("baseline", password)
        self.client.on_message = self._on_message
        self.port = port

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.count += 1
        self.last = now
        if self.target and self.count >= self.target:
            self.done.set()

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 65535
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.subscribe(f"{PREFIX}/v1/+/+/+", qos=1)
        self.client.loop_start()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CommitProbe(threading.Thread):
    """Publish → committed latency, measured exactly.

    A few probe connections (with the credentials of some wearables, not simulated meanwhile)
    publish ``worn`` events stamped with the real publish time, QoS 1, at ``rate`` per
    second in total. The gateway sends an event's application-level ack only after the
    transaction holding it has committed, so ack arrival - publish time bounds publish →
    committed from above (it adds the ack's own trip back through the broker).
    """

    def __init__(self, creds: list[Any], port: int, rate: float, delay_s: float) -> None:
        super().__init__(daemon=True)
        self.creds, self.port, self.rate, self.delay_s = creds, port, rate, delay_s
        self.sent: dict[str, float] = {}
        self.latency_ms: list[float] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _on_ack(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        ack = decode_ack(bytes(msg.payload))
        with self._lock:
            sent = self.sent.pop(ack.msg_id, None)
            if sent is not None and ack.status == "stored":
                self.latency_ms.append((now - sent) * 1000)

    def run(self) -> None:
        clients = []
        for c in self.creds:
            cl = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"probe-{c.device_id}",
                protocol=mqtt.MQTTv5,
            )  # fmt: skip
            cl.username_pw_set(c.device_id, c.password)
            cl.on_message = self._on_ack
            cl.connect("127.0.0.1", self.port)
            cl.subscribe(f"{PREFIX}/v1/bench/{c.device_id}/ack", qos=1)
            cl.loop_start()
            clients.append((c, cl))
        self.stop.wait(self.delay_s)
        seq = 0
        while not self.stop.is_set():
            for c, cl in clients:
                seq += 1
                msg_id = f"probe-{uuid.uuid4().hex[:16]}"
                now = time.time()
                with self._lock:
                    self.sent[msg_id] = now
                payload = encode_event(c.device_id, msg_id, seq, int(now * 1000), event="worn")
                cl.publish(f"{PREFIX}/v1/bench/{c.device_id}/event", payload, qos=1)
            self.stop.wait(len(clients) / self.rate)
        time.sleep(3)  # acks in flight
        for _, cl in clients:
            cl.disconnect()
            cl.loop_stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lag_histogram(api: str) -> dict[float, float]:
    with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("safehome_ingest_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile(hist: dict[float, float], q: float) -> float:
    """Quantile in ms from cumulative buckets, interpolating linearly inside a bucket."""
    edges = sorted(hist)
    total = hist[edges[-1]]
    if total <= 0:
        return float("nan")
    rank, prev_edge, prev_count = q * total, 0.0, 0.0
    for edge in edges:
        count = hist[edge]
        if count >= rank:
            if edge == float("inf"):
                return prev_edge * 1000
            frac = (rank - prev_count) / max(count - prev_count, 1e-9)
            return (prev_edge + frac * (edge - prev_edge)) * 1000
        prev_edge, prev_count = edge, count
    return prev_edge * 1000


def manifest(creds: list[Any], port: int) -> SiteManifest:
    return SiteManifest(
        site="bench",
        devices=tuple(
            ManifestDevice(
                c.device_id, DeviceKind(c.kind), c.password, c.bed_id, c.resident_id, c.location_id
            )
            for c in creds
        ),
        prefix=PREFIX,
        broker=BrokerEndpoint("127.0.0.1", port),
    )


async def simulate(m: SiteManifest, rate: float, duration: float) -> SimulationReport:
    cfg = SimulationConfig(
        manifest=m, duration_s=duration, stream_rate_hz=rate, heartbeat_s=60.0,
        connect_rate=1000.0, settle_s=10.0,
    )  # fmt: skip
    return await run_simulation(cfg)


def expected_total(report: SimulationReport) -> int:
    return sum(report.expected_rows.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--beds", type=int, default=5000, help="beds (2 devices each)")
    ap.add_argument("--rate", type=float, default=2.0, help="stream messages/s per device")
    ap.add_argument("--duration", type=float, default=60.0, help="sustained phase, seconds")
    ap.add_argument("--backlog-seconds", type=float, default=10.0)
    ap.add_argument("--probes", type=int, default=10, help="latency probe connections")
    ap.add_argument("--probe-rate", type=float, default=50.0, help="probe events per second")
    ap.add_argument(
        "--client", choices=("native", "paho"), default="native", help="gateway's MQTT client"
    )
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shg-bench-"))
    root.chmod(0o755)
    pg = PostgresServer(root / "pg", free_port())
    mq = MosquittoServer(root / "mq", free_port())
    gw_proc: subprocess.Popen[bytes] | None = None
    db_pw, gw_pw, base_pw = (uuid.uuid4().hex for _ in range(3))
    try:
        pg.init()
        pg.start()
        pg.ensure_database("safehome", "safehome", db_pw)
        conninfo = f"host=127.0.0.1 port={pg.port} dbname=safehome user=safehome password={db_pw}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            migrate(conn)
            creds = apply_site_definition(conn, site_definition(args.beds))
            accounts = device_accounts(conn)
        service = ServiceAccount("gateway", hash_password(gw_pw))
        mq.init(PREFIX, service, accounts, [ServiceAccount("baseline", hash_password(base_pw))])
        mq.start()
        n_dev = len(creds)
        print(f"devices: {n_dev}, stream rate {args.rate}/s each", flush=True)

        api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")} | {
            "SAFEHOME_DATABASE__PORT": str(pg.port),
            "SAFEHOME_DATABASE__PASSWORD": db_pw,
            "SAFEHOME_MQTT__PORT": str(mq.port),
            "SAFEHOME_MQTT__PASSWORD": gw_pw,
            "SAFEHOME_MQTT__CLIENT_ID": "bench-gateway",
            "SAFEHOME_API__PORT": str(api_port),
            "SAFEHOME_API__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "SAFEHOME_LOG__LEVEL": "WARNING",
            "SAFEHOME_MQTT__CLIENT": args.client,
        }
        api = f"http://127.0.0.1:{api_port}"

        def start_gateway() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "gateway", "run"], env=env,
                stdout=subprocess.DEVNULL, stderr=open(root / "gateway.log", "ab"),  # noqa: SIM115
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{api}/health", timeout=1) as r:  # noqa: S310
                        if json.loads(r.read())["broker_connected"]:
                            return proc
                except OSError:
                    pass
                time.sleep(0.2)
            raise RuntimeError("gateway did not start")

        # 1. backlog: both persistent sessions exist, neither is connected.
        base = BareSubscriber(mq.port, base_pw)
        base.connect()
        time.sleep(0.5)
        base.disconnect()
        gw_proc = start_gateway()
        gw_proc.terminate()
        gw_proc.wait(30)
        m = manifest(creds, mq.port)
        backlog = asyncio.run(simulate(m, args.rate, args.backlog_seconds))
        queued = sum(report_counts(backlog))
        print(f"backlog queued: {queued} messages", flush=True)

        # 2. baseline: bare paho QoS 1 receive rate.
        base = BareSubscriber(mq.port, base_pw)
        base.target = queued
        base.connect()
        base.done.wait(300)
        base.disconnect()
        baseline = (base.count - 1) / max(base.last - (base.first or base.last), 1e-9)
        print(f"baseline paho QoS 1 receive: {baseline:,.0f} msg/s ({base.count} msgs)")

        # 3. drain: the gateway stores its queued backlog.
        expected_backlog = expected_total(backlog)
        gw_proc = start_gateway()
        t0 = time.time()  # from the broker connection: start-up is not ingest
        t_done = wait_total(conninfo, expected_backlog, 300)
        drained = stored_total(conninfo)
        drain_rate = drained / max(t_done - t0, 1e-9)
        print(f"gateway drain: {drain_rate:,.0f} msg/s ({drained} rows)", flush=True)

        # 4. sustained realistic load.
        before_hist = lag_histogram(api)
        cpu0, wall0 = cpu_seconds(gw_proc.pid), time.time()
        wearables = [c for c in creds if c.kind == "wearable"][: args.probes]
        probe = CommitProbe(wearables, mq.port, args.probe_rate, delay_s=n_dev / 1000.0 + 5)
        probe.start()
        # The broker binds a client id to its user name: the probes' wearables are not
        # simulated meanwhile (two connections of one device would take over each other).
        probing = {c.device_id for c in wearables}
        m_live = manifest([c for c in creds if c.device_id not in probing], mq.port)
        report = asyncio.run(simulate(m_live, args.rate, args.duration))
        probe.stop.set()
        probe.join(30)
        target = drained + expected_total(report)
        t_end = wait_total(conninfo, target, 120)
        cpu1 = cpu_seconds(gw_proc.pid)
        probes = len(probe.latency_ms)
        stored = stored_total(conninfo) - drained
        after_hist = lag_histogram(api)
        hist = {k: after_hist[k] - before_hist.get(k, 0.0) for k in after_hist}
        window = max(report.ended_at - report.steady_at, 1e-9)
        sent = expected_total(report)
        result = {
            "client": args.client,
            "devices": n_dev,
            "offered_msgs_per_s": round(report.publish_rate, 1),
            "msgs_per_s": round(stored / window, 1),
            "rows_per_s": round(stored / window, 1),
            "accel_samples_per_s": round(
                report.expected_rows.get(RowKind.ACCEL, 0) * 50 / args.rate / window, 1
            ),
            "p50_ms": round(float(np.percentile(probe.latency_ms, 50)), 1),
            "p99_ms": round(float(np.percentile(probe.latency_ms, 99)), 1),
            "latency_probes": probes,
            "sample_age_p50_ms": round(quantile(hist, 0.50), 1),
            "sample_age_p99_ms": round(quantile(hist, 0.99), 1),
            "sent": sent,
            "stored": stored,
            "lost": sent - stored,
            "gateway_cpu_pct": round(100 * (cpu1 - cpu0) / max(t_end - wall0, 1e-9), 1),
            "drain_msgs_per_s": round(drain_rate, 1),
            "baseline_paho_qos1_msgs_per_s": round(baseline, 1),
            "ratio_to_baseline": round(drain_rate / baseline, 3),
        }
        print(
            f"sustained: {result['msgs_per_s']:,} msg/s stored, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, lost {result['lost']}, "
            f"gateway CPU {result['gateway_cpu_pct']} % of a core"
        )
        print(json.dumps(result))
    finally:
        if gw_proc is not None and gw_proc.poll() is None:
            gw_proc.terminate()
            gw_proc.wait(30)
        mq.stop()
        pg.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def report_counts(report: SimulationReport) -> list[int]:
    return [int(v) for v in report.acked.values()]


if __name__ == "__main__":
    main()
