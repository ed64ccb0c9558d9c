"""``safehome demo``: the whole product on one machine with a simulated site.

Starts the project's private PostgreSQL + TimescaleDB and Mosquitto (``var/demo``), applies
the schema and the demo sites (``config/sites/demo-*.toml``: a small nursing home and three
home-care beds), issues fresh device credentials, runs the gateway as its own process and
the simulator with the scripted incidents, and prints where to look and how to stop.
Idempotent: run it again and it reuses the services and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from devices.manifest import ManifestDevice, SiteManifest, save_manifest
from devices.protocol import DeviceKind
from devices.scenario import default_scenario
from devices.simulator import SimulationConfig, run_simulation
from devices.transport import BrokerEndpoint
from gateway.commissioning import DeviceCredential, apply_site_definition, load_site_definition
from gateway.localsvc_admin import LocalServices, settings_with_local_secrets
from gateway.logs import configure_logging
from gateway.settings import PROJECT_ROOT, Settings

DEMO_CONFIG = PROJECT_ROOT / "config" / "demo.toml"
DEMO_SITES = sorted((PROJECT_ROOT / "config" / "sites").glob("demo-*.toml"))
COUNTED = ("readings", "accel", "device_events", "device_state", "dead_letters")


def _manifest(
    settings: Settings, definition: dict[str, Any], creds: list[DeviceCredential]
) -> SiteManifest:
    bed_resident = {r.get("bed"): r["id"] for r in definition.get("residents", [])}
    devices = tuple(
        ManifestDevice(
            id=c.device_id,
            kind=DeviceKind(c.kind),
            password=c.password,
            bed=c.bed_id,
            resident=c.resident_id or bed_resident.get(c.bed_id),
            location=c.location_id,
        )
        for c in creds
    )
    return SiteManifest(
        site=str(definition["site"]["id"]),
        devices=devices,
        prefix=settings.mqtt.prefix,
        utc_offset_s=int(definition["site"].get("utc_offset_s", 28800)),
        broker=BrokerEndpoint(host=settings.mqtt.host, port=settings.mqtt.port),
    )


def _counts(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        out = {}
        for table in COUNTED:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            out[table] = int(row[0]) if row else 0
        events = conn.execute(
            "SELECT type, count(*) FROM device_events GROUP BY type ORDER BY type"
        ).fetchall()
        for kind, n in events:
            out[f"event:{kind}"] = int(n)
        return out


def _wait_health(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with code {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as resp,  # noqa: S310 (local URL)
        ):
            if resp.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError("gateway did not become healthy")


def run_demo(config_file: Path | None, duration_s: float | None = None) -> int:
    config = config_file or DEMO_CONFIG
    settings, secret_env = settings_with_local_secrets(config)
    configure_logging("INFO", "text")
    var = settings.var_dir
    var.mkdir(parents=True, exist_ok=True)
    print(f"[demo] starting local services under {var} …", flush=True)
    services = LocalServices(settings)
    services.up()

    manifests = []
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        for path in DEMO_SITES:
            definition = load_site_definition(path)
            creds = apply_site_definition(conn, definition, rotate_passwords=True)
            manifest = _manifest(settings, definition, creds)
            save_manifest(manifest, var / f"manifest-{manifest.site}.json")
            manifests.append(manifest)
    services.sync_broker()

    env = dict(os.environ) | secret_env | {"SAFEHOME_CONFIG": str(config)}
    log_path = var / "gateway.log"
    with log_path.open("ab") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = f"http://{settings.api.host}:{settings.api.port}"
    try:
        _wait_health(f"{api}/health", gateway)
        _banner(settings, api, log_path, manifests)
        asyncio.run(_simulate(settings, manifests, duration_s))
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        print(
            "[demo] gateway and simulator stopped. The services keep running with their data;\n"
            "       stop them with: .venv/bin/safehome --config config/demo.toml services down",
            flush=True,
        )
    return 0


def _banner(settings: Settings, api: str, log_path: Path, manifests: list[SiteManifest]) -> None:
    d = settings.database
    devices = sum(len(m.devices) for m in manifests)
    print(
        "\n"
        "==================== Safe-Home Guardian demo ====================\n"
        f"  Console / API     {api}/   (OpenAPI: {api}/docs)\n"
        f"  Health, metrics   {api}/health   {api}/metrics\n"
        f"  Sites             {', '.join(m.site for m in manifests)} ({devices} devices)\n"
        f"  Database          psql -h 127.0.0.1 -p {d.port} -U {d.user} {d.name}\n"
        f"                    (password in {settings.var_dir / 'secrets' / 'db_password'})\n"
        f"  Gateway log       {log_path}\n"
        "  Scripted incidents (minutes after start): button press, fall, not up,\n"
        "  night bed exit, a device going silent, low battery.\n"
        "  Stop: Ctrl-C (services keep running; `services down` stops them)\n"
        "=================================================================\n",
        flush=True,
    )


async def _simulate(
    settings: Settings, manifests: list[SiteManifest], duration_s: float | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    sims = [
        asyncio.create_task(
            run_simulation(
                SimulationConfig(manifest=m, scenario=default_scenario(), seed=i, heartbeat_s=30.0),
                stop=stop,
            )
        )
        for i, m in enumerate(manifests)
    ]
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=15)
        counts = await asyncio.to_thread(_counts, settings)
        print("[demo] stored rows: " + ", ".join(f"{k}={v}" for k, v in counts.items()),
              flush=True)  # fmt: skip
        for task in sims:
            if task.done() and task.exception() is not None:
                raise RuntimeError("simulator failed") from task.exception()
    for task in sims:
        report = await task
        published = {str(k): v for k, v in report.published.items()}
        print(f"[demo] {report.site}: published {published}", flush=True)
