"""Fault matrix benchmark: every fault of the matrix, then alarm → page latency under load.

Part 1 runs the faults of :mod:`tests.faultkit.matrix` (the same functions the test suite
runs), each against its own database and broker, the gateway as its own process, and prints
one line per fault: PASS/FAIL, recovery time (end of the fault → every alarm stored, raised
and paged), the ledger (sent/stored/raised, incidents, pages, lost, duplicates) and the
fault's own figures. All services are private to the run: PostgreSQL + TimescaleDB on a
small tmpfs of its own (the "volume full" fault fills it), Mosquitto, the gateway.

Part 2 measures, without faults, ``--presses`` emergency presses (each by another resident,
``--interval`` apart) while ``--background-devices`` devices (bed sensors and wearables, 1
message/s each, from the simulator in its own process) load the gateway: each press is timed
from its publication to the first page of its incident arriving at the on-duty user's
channel receiver (a local HTTP receiver on the user's staff channel); on a gateway without
staff paging channels, to the page written for the console (``page_source`` says which).
Baseline, same run, same load: the same presses delivered by the broker to a bare
subscriber; ``p99_ratio_to_broker`` is the full path's p99 over that floor.

The last line is one JSON object: ``faults``, ``alarms_sent``, ``incidents``, ``lost``,
``duplicates``, ``paged``, ``max_recovery_s``, ``p99_alarm_to_page_ms`` (+ ``failed``,
``background_devices``, ``broker_p99_ms``, ``p99_ratio_to_broker``, ``page_source``).

Run as root from the project root: ``.venv/bin/python -m bench.faults`` (full size: 10,000
background devices); ``--background-devices 1000 --presses 30`` on a small machine;
``--faults clocks,backlog`` for a subset; ``--no-latency`` / ``--no-faults`` for one part.
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
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import manifest, site_definition
from devices.manifest import save_manifest
from gateway.brokerauth import ServiceAccount, hash_password
from tests.faultkit.fleet import Fleet, Press
from tests.faultkit.ledger import FaultResult, LedgerReport, page_times
from tests.faultkit.matrix import FAULTS, NEEDS_POOL, Env
from tests.faultkit.stack import (
    GatewayProc,
    Receiver,
    ServerPool,
    close_broker,
    install,
    new_broker,
)
from tests.support import Database

VOLUME_MB = 192


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_faults(root: Path, pool: ServerPool, names: list[str]) -> list[FaultResult]:
    results: list[FaultResult] = []
    for name in names:
        if not pool.server.running():
            pool.server.start()
        db = pool.database()
        broker = new_broker(root)
        try:
            env = Env(root / name, db, broker, pool if name in NEEDS_POOL else None)
            result = FAULTS[name](env)
        except Exception as exc:  # one broken fault must not hide the others' lines
            result = FaultResult(name, LedgerReport(), None, failures=[f"error: {exc!r}"])
        finally:
            close_broker(broker)
            pool.drop(db)
        print(result.line(), flush=True)
        results.append(result)
    return results


class BrokerBaseline:
    """The presses straight from the broker, to a bare subscriber (delivery only)."""

    def __init__(self, port: int, username: str, password: str, site: str) -> None:
        self.received: dict[str, float] = {}
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline",
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.username_pw_set(username, password)
        c.on_connect = lambda cl, *_: cl.subscribe(f"shg/v1/{site}/+/event", qos=1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            msg_id = str(json.loads(msg.payload)["id"])
        except (ValueError, KeyError):
            return
        self.received.setdefault(msg_id, time.time())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


_INCIDENT_OF = b"""
SELECT de.msg_id, ie.incident_id
FROM device_events de JOIN incident_events ie
  ON ie.kind IN ('raised', 'triggered')
 AND abs(extract(epoch FROM (ie.data->>'trigger_time')::timestamptz - de.time)) < 0.0005
WHERE de.msg_id = ANY(%s)
"""


def _incident_of(db: Database, presses: list[Press]) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(_INCIDENT_OF, ([p.msg_id for p in presses],)).fetchall()
    return {str(m): int(i) for m, i in rows}


def _wait_flowing(gw: GatewayProc, messages: int, timeout_s: float) -> None:
    """Wait until the background load flows (``messages`` received since now)."""
    m0, t0 = gw.metric("safehome_ingest_messages_total"), time.monotonic()
    while gw.metric("safehome_ingest_messages_total") - m0 < messages:
        if time.monotonic() - t0 > timeout_s:
            return
        time.sleep(1)


def alarm_to_page(
    root: Path, pool: ServerPool, background: int, presses: int, interval_s: float
) -> dict[str, Any]:
    """Part 2 (see the module documentation)."""
    definition = site_definition(max(presses, background // 2))
    for i in range(presses):
        definition["devices"].append(
            {
                "id": f"bt{i}",
                "kind": "button",
                "model": "BT",
                "serial": f"bt{i}",
                "bed": f"b{i}",
                "location": f"l{i}",
            }
        )
    db = pool.database()
    broker = new_broker(root)
    monitor_pw = uuid.uuid4().hex
    broker.extra.append(ServiceAccount("bench-monitor", hash_password(monitor_pw)))
    sim: subprocess.Popen[bytes] | None = None
    try:
        site = install(db, broker, definition)
        buttons = [d for d in site.devices if d.device_id in site.buttons]
        load = [c for c in site.credentials if c.kind != "button"]
        manifest_path = root / "background.json"
        save_manifest(manifest(load, broker.port), manifest_path)
        with Receiver() as receiver:
            gw = GatewayProc(root / "latency", db, broker, receiver, proxied=False,
                             config={"log": {"level": "WARNING"}})  # fmt: skip
            try:
                gw.start(timeout_s=180)
                sim = subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "simulate", "--manifest",
                     str(manifest_path), "--duration", str(presses * interval_s + 90),
                     "--heartbeat", "60"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                _wait_flowing(gw, 2 * len(load), 90)
                baseline = BrokerBaseline(broker.port, "bench-monitor", monitor_pw, "bench")
                if not baseline.subscribed.wait(10):
                    raise RuntimeError("baseline subscriber did not subscribe")
                with Fleet(broker.port, buttons, heartbeat_s=60.0) as fleet:
                    m1, w1 = gw.metric("safehome_ingest_messages_total"), time.time()
                    sent: list[Press] = []
                    for dev in buttons:
                        sent.append(fleet.press(dev.device_id))
                        time.sleep(interval_s)
                    m2, w2 = gw.metric("safehome_ingest_messages_total"), time.time()
                    deadline = time.monotonic() + 30
                    while True:
                        incident_of = _incident_of(db, sent)
                        pages = page_times(db, site, receiver)
                        done = all(incident_of.get(p.msg_id) in pages for p in sent)
                        if done or time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
                baseline.close()
            finally:
                gw.close()
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
        close_broker(broker)
        pool.drop(db)
    lat = [(pages[incident_of[p.msg_id]] - p.sent_at) * 1000 for p in sent
           if incident_of.get(p.msg_id) in pages]  # fmt: skip
    floor = [(baseline.received[p.msg_id] - p.sent_at) * 1000 for p in sent
             if p.msg_id in baseline.received]  # fmt: skip
    p99, broker_p99 = _pct(lat, 99), _pct(floor, 99)
    return {
        "latency_presses": len(sent),
        "latency_missed": len(sent) - len(lat),
        "p50_alarm_to_page_ms": _pct(lat, 50),
        "p99_alarm_to_page_ms": p99,
        "max_alarm_to_page_ms": round(max(lat), 1) if lat else None,
        "page_source": "staff channel receiver" if site.paging else "staff_pages row",
        "background_devices": len(load),
        "background_msgs_per_s": round((m2 - m1) / max(w2 - w1, 1e-9), 1),
        "broker_p50_ms": _pct(floor, 50),
        "broker_p99_ms": broker_p99,
        "p99_ratio_to_broker": round(p99 / broker_p99, 2) if p99 and broker_p99 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated subset of: {', '.join(FAULTS)}")  # fmt: skip
    ap.add_argument("--background-devices", type=int, default=10_000,
                    help="devices loading the gateway while alarm → page is timed")  # fmt: skip
    ap.add_argument("--presses", type=int, default=100, help="presses timed (part 2)")
    ap.add_argument("--interval", type=float, default=0.4, help="seconds between presses")
    ap.add_argument("--no-faults", action="store_true", help="skip part 1")
    ap.add_argument("--no-latency", action="store_true", help="skip part 2")
    args = ap.parse_args()
    names = [] if args.no_faults else [n.strip() for n in args.faults.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        ap.error(f"unknown faults: {unknown}")
    if os.geteuid() != 0:
        ap.error("run as root: the volume_full fault mounts a tmpfs")

    root = Path(tempfile.mkdtemp(prefix="shg-faults-"))
    root.chmod(0o755)
    pool = ServerPool(root / "pg", tmpfs_mb=VOLUME_MB)
    results: list[FaultResult] = []
    latency: dict[str, Any] = {}
    try:
        pool.start()
        results = run_faults(root, pool, names)
        if not args.no_latency:
            latency = alarm_to_page(root, pool, args.background_devices, args.presses,
                                    args.interval)  # fmt: skip
            print(
                f"alarm → page, no fault, {latency['background_devices']:,} background devices "
                f"({latency['background_msgs_per_s']:,} msg/s): "
                f"{latency['latency_presses']} presses, "
                f"p50 {latency['p50_alarm_to_page_ms']} ms, p99 "
                f"{latency['p99_alarm_to_page_ms']} ms, max {latency['max_alarm_to_page_ms']} "
                f"ms, missed {latency['latency_missed']} (page at: {latency['page_source']})\n"
                f"baseline, same run: broker delivery to a bare subscriber p50 "
                f"{latency['broker_p50_ms']} ms, p99 {latency['broker_p99_ms']} ms; "
                f"alarm→page p99 / broker p99 = {latency['p99_ratio_to_broker']}",
                flush=True,
            )
    finally:
        pool.close()
        shutil.rmtree(root, ignore_errors=True)
    recoveries = [r.recovery_s for r in results if r.recovery_s is not None]
    summary: dict[str, Any] = {
        "faults": len(results),
        "alarms_sent": sum(r.report.alarms_sent for r in results),
        "incidents": sum(r.report.incidents for r in results),
        "lost": sum(len(r.report.lost) for r in results),
        "duplicates": sum(len(r.report.duplicates) for r in results),
        "paged": sum(r.report.paged for r in results),
        "max_recovery_s": max(recoveries) if recoveries else None,
        "p99_alarm_to_page_ms": latency.get("p99_alarm_to_page_ms"),
        "failed": [r.name for r in results if not r.passed],
        "never_recovered": [r.name for r in results if r.recovery_s is None],
    } | {k: v for k, v in latency.items() if k != "p99_alarm_to_page_ms"}
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
