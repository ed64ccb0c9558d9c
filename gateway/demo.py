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
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from analytics.routine import RoutineParams
from devices.manifest import ManifestDevice, SiteManifest, save_manifest
from devices.protocol import DeviceKind
from devices.scenario import IncidentKind, Scenario, bind_scenario, default_scenario
from devices.simulator import SimulationConfig, run_simulation
from devices.transport import BrokerEndpoint
from gateway.api.auth import create_user, hash_password
from gateway.commissioning import DeviceCredential, apply_site_definition, load_site_definition
from gateway.escalation.roster import DutyRole, add_shift
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.localsvc import free_port
from gateway.localsvc_admin import LocalServices, settings_with_local_secrets
from gateway.logs import configure_logging
from gateway.paging.channels import add_channel, list_channels
from gateway.platform.demo import demo_platform
from gateway.settings import PROJECT_ROOT, Settings
from gateway.storage import counts, demo_sites, people
from gateway.storage import users as users_repo
from gateway.visits.demo import seed_visits_demo

DEMO_CONFIG = PROJECT_ROOT / "config" / "demo.toml"
DEMO_SITES = sorted((PROJECT_ROOT / "config" / "sites").glob("demo-*.toml"))
COUNTED = ("readings", "accel", "device_events", "device_state", "dead_letters")
# Console users of the demo: (username, role, site, linked resident). Passwords are generated
# once and kept in <var_dir>/secrets/users.json (mode 0600).
DEMO_USERS = (
    ("duty-nh", "duty_staff", "demo-nh", None),
    ("sup-nh", "supervisor", "demo-nh", None),
    ("duty-hc", "duty_staff", "demo-hc", None),
    ("family-nh01", "family", None, "nh-res-01"),
    ("inst-nh", "installer", "demo-nh", None),
)
# Their display names (fictitious), shown instead of ids and login names ("护工 张丽").
DEMO_NAMES = {
    "duty-nh": "张丽", "sup-nh": "王芳", "duty-hc": "陈静", "family-nh01": "李娜",
    "inst-nh": "赵强",
}  # fmt: skip
DEMO_CARE_PHONES = {"demo-nh": "0571-8888 6000", "demo-hc": "0571-8888 7000"}
# Site clocks (issue 11 §1): the nursing home starts shortly before its not-up deadline (the
# morning scene), the home-care site in the night (the night bed exit); both play every
# other scene. NOT_UP_LEAD_S: the bound resident's not-up deadline passes this long after
# the start; NIGHT_START_S: the home-care site's local time at the start.
MORNING_SITE = "demo-nh"
NIGHT_SITE = "demo-hc"
NOT_UP_LEAD_S = 240.0
NIGHT_START_S = 23 * 3600.0


def _demo_users(conn: psycopg.Connection[Any], var: Path) -> dict[str, str]:
    """Create (or re-password) the demo's console users and put the staff on shift."""
    path = var / "secrets" / "users.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    now = datetime.now(UTC)
    for username, role, site, resident in DEMO_USERS:
        password = known.setdefault(username, secrets.token_urlsafe(9))
        known_id = users_repo.user_id_of(conn, username)
        if known_id is None:
            user_id = create_user(
                conn, username, role, password, site_id=site,
                residents=[resident] if resident else (),
            )  # fmt: skip
        else:
            user_id = known_id
            users_repo.set_password_hash(conn, user_id, hash_password(password))
        people.set_display_name(conn, user_id, DEMO_NAMES[username], actor="demo")
        if role in ("duty_staff", "supervisor") and not list_channels(conn, user_id):
            # Pages reach the demo's local receiver (printed with their ack link).
            add_channel(conn, user_id, "webhook", None, actor="demo")
        if role in ("duty_staff", "supervisor") and site is not None:
            add_shift(
                conn, site, user_id=user_id, role=DutyRole(role),
                starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=12),
            )  # fmt: skip
    # 探访关爱: the community worker and the district supervisor (their passwords kept too),
    # an overdue visit, assessments, and a short night shift for the staffing check.
    seed_visits_demo(conn, known, now=now)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(known, fh)
    return known


class _Receiver(BaseHTTPRequestHandler):
    """The demo's stand-in for a family app's backend and a staff pager: prints each
    notification and each staff page (with its acknowledgement link) it gets."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()
        try:
            note = json.loads(body)
        except ValueError:
            note = {}
        if note.get("event") == "staff.page":
            fields = note.get("fields") or {}
            print(f"[demo] staff page for user {note.get('user_id')} delivered to the local "
                  f"receiver: incident {note.get('incident_id')} {fields.get('label')}\n"
                  f"       acknowledge (打开链接确认): {fields.get('ack_url')}\n"
                  f"       or SMS reply code (短信回复码) {fields.get('ack_code')}",
                  flush=True)  # fmt: skip
            return
        summary = {k: note.get(k) for k in ("incident_id", "contact_id", "title") if k in note}
        print(f"[demo] family notification delivered to the local receiver: {summary or note}",
              flush=True)  # fmt: skip

    def log_message(self, format: str, *args: Any) -> None:
        return


def _start_receiver() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/notify"


def _ack_secret(var: Path) -> str:
    """The demo's page-link key, generated once in <var_dir>/secrets/paging_ack_secret."""
    path = var / "secrets" / "paging_ack_secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(36)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


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
        utc_offset_s=int(definition["site"].get("utc_offset_s", DEFAULT_UTC_OFFSET_S_INT)),
        broker=BrokerEndpoint(host=settings.mqtt.host, port=settings.mqtt.port),
    )


def offset_for_local_time(local_s: float, now: float) -> int:
    """The UTC offset (whole minutes, within -12 h..+14 h) at which a site's clock reads
    ``local_s`` seconds after local midnight at epoch ``now``."""
    off = round(((local_s - now) % 86400.0) / 60.0) * 60
    return off - 86400 if off > 14 * 3600 else off


def not_up_deadline_s(care_level: int, overrides: dict[str, float]) -> float:
    """A resident's cold-start not-up deadline (seconds after local midnight): the usual
    rise of their care level plus the margins (analytics.routine)."""
    p = RoutineParams.for_care_level(care_level, **overrides)
    return p.default_rise_s + p.not_up_margin_s + p.cold_start_extra_margin_s


def demo_site_clock(
    manifest: SiteManifest,
    definition: dict[str, Any],
    scenario: Scenario,
    now: float,
    overrides: dict[str, float],
    *,
    lead_s: float = NOT_UP_LEAD_S,
) -> int | None:
    """The UTC offset that plays every scene of ``scenario`` on this site from ``now``: the
    morning site's not-up resident passes the deadline NOT_UP_LEAD_S after the start; the
    night site starts at NIGHT_START_S. None: another site keeps its own clock."""
    site = manifest.site
    if site == NIGHT_SITE:
        return offset_for_local_time(NIGHT_START_S, now)
    if site != MORNING_SITE:
        return None
    levels = {r["id"]: int(r.get("care_level", 2)) for r in definition.get("residents", [])}
    residents = {d.id: d.resident for d in manifest.devices}
    for s in bind_scenario(scenario, manifest):
        if s.incident.kind is IncidentKind.NOT_UP:
            level = levels.get(residents.get(s.device) or "", 2)
            return offset_for_local_time(not_up_deadline_s(level, overrides) - lead_s, now)
    return None


def prepare_sites(
    conn: psycopg.Connection[Any],
    settings: Settings,
    scenario: Scenario,
    now: float,
    lead_s: float = NOT_UP_LEAD_S,
) -> list[SiteManifest]:
    """Apply the demo sites (fresh device credentials), set their clocks and care phones."""
    manifests = []
    for path in DEMO_SITES:
        definition = load_site_definition(path)
        creds = apply_site_definition(conn, definition, rotate_passwords=True)
        manifest = _manifest(settings, definition, creds)
        offset = demo_site_clock(
            manifest, definition, scenario, now, settings.analysis.routine_overrides, lead_s=lead_s
        )
        if offset is not None:
            demo_sites.set_site_clock(conn, manifest.site, offset)
            manifest = replace(manifest, utc_offset_s=offset)
        phone = DEMO_CARE_PHONES.get(manifest.site)
        if phone:
            people.set_care_phone(conn, manifest.site, phone, actor="demo")
        manifests.append(manifest)
    return manifests


def _counts(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        out = counts.row_counts(conn, COUNTED)
        for kind, n in counts.event_counts(conn).items():
            out[f"event:{kind}"] = n
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

    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        manifests = prepare_sites(conn, settings, default_scenario(), time.time())
        for manifest in manifests:
            save_manifest(manifest, var / f"manifest-{manifest.site}.json")
        users = _demo_users(conn, var)
    services.sync_broker()
    receiver, receiver_url = _start_receiver()
    platform_env, platform = demo_platform(var)  # the monthly platform push's receiver
    api = f"http://{settings.api.host}:{settings.api.port}"

    env = (
        dict(os.environ)
        | secret_env
        | {
            "SAFEHOME_CONFIG": str(config),
            "SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL": receiver_url,
            # Staff pages carry a one-time acknowledgement link to this gateway.
            "SAFEHOME_PAGING__PUBLIC_BASE_URL": api,
            "SAFEHOME_PAGING__ACK_SECRET": _ack_secret(var),
        }
        | platform_env
    )
    log_path = var / "gateway.log"
    with log_path.open("ab") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_health(f"{api}/health", gateway)
        _banner(settings, api, log_path, manifests, users=users, receiver_url=receiver_url)
        asyncio.run(_simulate(settings, manifests, duration_s))
    finally:
        receiver.shutdown()
        platform.stop()
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


def _banner(
    settings: Settings,
    api: str,
    log_path: Path,
    manifests: list[SiteManifest],
    *,
    users: dict[str, str],
    receiver_url: str,
) -> None:
    d = settings.database
    devices = sum(len(m.devices) for m in manifests)
    logins = "\n".join(f"                    {u} / {pw}" for u, pw in users.items())
    print(
        "\n"
        "==================== Safe-Home Guardian demo ====================\n"
        f"  Staff console     {api}/        Family view {api}/family\n"
        f"  Visiting care     {api}/worker (community worker, phone)   "
        f"District supervisor {api}/district\n"
        f"  Logins            (user / password; also in {settings.var_dir / 'secrets'})\n"
        f"{logins}\n"
        f"  API               {api}/docs (OpenAPI)\n"
        f"  Installer CLI     .venv/bin/safehome login --gateway {api} --user inst-nh\n"
        "                    then follow docs/installer-guide.md (site demo-nh)\n"
        f"  Receiver          {receiver_url} (family notifications and staff pages with\n"
        "                    their acknowledgement link are printed here: no console needed)\n"
        f"  SLA report        .venv/bin/safehome --config config/demo.toml report sla "
        f"--site demo-nh --month {datetime.now(UTC):%Y-%m}\n"
        f"  Health, metrics   {api}/health   {api}/metrics\n"
        f"  Sites             {', '.join(m.site for m in manifests)} ({devices} devices)\n"
        f"  Database          psql -h 127.0.0.1 -p {d.port} -U {d.user} {d.name}\n"
        f"                    (password in {settings.var_dir / 'secrets' / 'db_password'})\n"
        f"  Gateway log       {log_path}\n"
        "  Scripted incidents (minutes after start): button press, fall, not up,\n"
        "  night bed exit, a device going silent, low battery. An emergency nobody\n"
        "  acknowledges escalates: duty staff, supervisor, then the family (about 2.5 min).\n"
        "  Stop: Ctrl-C (services keep running; `services down` stops them)\n"
        "=================================================================\n",
        flush=True,
    )


def demo_scenario() -> Scenario:
    """The scripted scenes, played until the demo is stopped (Ctrl-C or ``--duration``): the
    scenario's own suggested length (10 minutes) would end the simulation, and with it the
    whole demo, while the README promises it runs until stopped."""
    return replace(default_scenario(), duration_s=None)


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
                SimulationConfig(manifest=m, scenario=demo_scenario(), seed=i, heartbeat_s=30.0),
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
