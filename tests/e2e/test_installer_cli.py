"""The installer's CLI end to end: the real ``safehome`` process, as an HTTP client only,
against a real gateway (HTTP API, MQTT ingest, PostgreSQL, Mosquitto whose accounts the
gateway rewrites), with real devices publishing with the credentials the CLI printed.

It follows docs/installer-guide.md: sign in, import a small site from CSV (a dry run finds
a bad row first), print labels, register and bind devices, run their acceptance tests while
the "device" presses / lies down / gets up, read status and the commissioning records,
rotate, replace and decommission — after which the broker refuses the device.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices import protocol as p
from gateway.api.auth import create_user
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    broker_env,
    gateway_settings,
    wait_until,
)

pytestmark = pytest.mark.e2e

SITE = "sunrise"
ADMIN_PW = "admin-" + uuid.uuid4().hex[:10]
INSTALLER_PW = "inst-" + uuid.uuid4().hex[:10]

LOCATIONS = """location_id,kind,label,address
sunrise-r101,room,Room 101,
sunrise-r102,room,Room 102,
"""
BEDS_BAD = """bed_code,location_id
BED-0101,sunrise-r101
B1,sunrise-r101
BED-0102,sunrise-r999
"""
BEDS = """bed_code,location_id
BED-0101,sunrise-r101
BED-0102,sunrise-r102
"""
RESIDENTS = """elder_code,display_name,care_level,bed_code,lives_alone
ELD-0101,Wang Fang,2,BED-0101,no
ELD-0102,Li Wei,3,BED-0102,yes
"""


@dataclass
class Cli:
    """Runs ``python -m gateway.cli`` with an isolated HOME and no SAFEHOME_* settings:
    the installer's machine has no database credentials."""

    home: Path
    gateway: str

    @property
    def config(self) -> Path:
        return self.home / "xdg" / "safehome"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEHOME_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "xdg"), COLUMNS="160")
        return env

    def __call__(
        self, *args: str, stdin: str | None = None, want: int | None = 0, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], input=stdin, env=self.env(),
            cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if want is not None:
            assert done.returncode == want, (args, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args], env=self.env(), cwd=self.home,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


@pytest.fixture
def gateway(db: Database, broker: Broker) -> Iterator[InProcessGateway]:
    """A gateway that manages the broker's passwd/ACL (and reloads it) and tells devices to
    connect to the test broker without TLS."""
    settings = gateway_settings(db, broker, **broker_env(broker))
    with db.connect() as conn:  # the operator's part: an admin account
        create_user(conn, "admin", "admin", ADMIN_PW)
    with InProcessGateway(settings) as gw:
        yield gw


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Device:
    """A device configured from the JSON the CLI printed (a real MQTT connection)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.id = config["device_id"]
        mqtt = config["mqtt"]
        assert mqtt["tls"] is False and mqtt["username"] == self.id
        self.client = DeviceClient(mqtt["port"], mqtt["username"], mqtt["password"])
        self.prefix = mqtt["topic_prefix"]
        self.seq = 0

    def __enter__(self) -> Device:
        self.client.__enter__()
        assert not self.client.refused, self.client.connect_rc
        self.client.subscribe(f"{self.prefix}/ack")  # the gateway's acks of its events
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def send(self, channel: str, make: Any, **kw: Any) -> None:
        """Publish one message; an event waits for the gateway's ``stored`` ack."""
        self.seq += 1
        msg_id = f"{self.id}-{self.seq}"
        payload = make(self.id, msg_id, self.seq, int(time.time() * 1000), **kw)
        self.client.publish(f"{self.prefix}/{channel}", payload)
        if channel == "event":
            wait_until(
                lambda: any(p.decode_ack(a) == p.Ack(msg_id, p.AckStatus.STORED)
                            for a in self.client.acks),
                15, f"the gateway's ack of {msg_id}",
            )  # fmt: skip


@contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """A CLI process that is killed if the test fails while it runs."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def refused(config: dict[str, Any]) -> bool:
    mqtt = config["mqtt"]
    with DeviceClient(mqtt["port"], mqtt["username"], mqtt["password"]) as c:
        return c.refused


def _test_started(db: Database, device_id: str) -> bool:
    return bool(db.scalar(
        "SELECT count(*) FROM acceptance_tests WHERE device_id = %s AND finished_at IS NULL",
        (device_id,),
    ))  # fmt: skip


def test_installer_commissions_a_site_with_the_cli_only(
    gateway: InProcessGateway, db: Database, broker: Broker, tmp_path: Path
) -> None:
    cli = Cli(tmp_path, gateway.api_url)
    (tmp_path / "xdg").mkdir()

    # -- problems people hit first ------------------------------------------------------
    out = cli("whoami", want=4)
    assert "not signed in" in out.stderr and "safehome login" in out.stderr
    out = cli("login", "--gateway", f"http://127.0.0.1:{_closed_port()}", "--user", "admin",
              "--password-stdin", stdin=ADMIN_PW + "\n", want=3)  # fmt: skip
    assert "unreachable" in out.stderr and "SAFEHOME_GATEWAY_URL" in out.stderr
    out = cli("login", "--gateway", cli.gateway, "--user", "admin", "--password-stdin",
              stdin="wrong-password\n", want=4)  # fmt: skip
    assert "wrong user name or password" in out.stderr
    assert not (cli.config / "token.json").exists()

    # -- the operator (admin) creates the empty site and the installer's account ---------
    cli("login", "--gateway", cli.gateway, "--user", "admin", "--password-stdin",
        stdin=ADMIN_PW + "\n")  # fmt: skip
    site = cli.json("site", "create", SITE, "--name", "Sunrise Home", "--kind", "nursing_home")
    assert site["site_id"] == SITE and site["counts"]["beds"] == 0
    with db.connect() as conn:
        create_user(conn, "inst-li", "installer", INSTALLER_PW, site_id=SITE)

    # -- the installer signs in; the token is cached privately -------------------------
    out = cli("login", "--user", "inst-li", "--password-stdin", stdin=INSTALLER_PW + "\n")
    assert INSTALLER_PW not in out.stdout + out.stderr
    token_file = cli.config / "token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o700
    me = cli.json("whoami")
    assert (me["role"], me["site"], me["username"]) == ("installer", SITE, "inst-li")
    assert me["gateway_in_use"] == cli.gateway and "access_token" not in me

    # -- the site from CSV: a dry run finds the bad rows first ---------------------------
    (tmp_path / "locations.csv").write_text(LOCATIONS)
    (tmp_path / "beds-bad.csv").write_text(BEDS_BAD)
    (tmp_path / "beds.csv").write_text(BEDS)
    (tmp_path / "residents.csv").write_text(RESIDENTS)
    out = cli("import", "locations", "locations.csv", "--dry-run")
    assert "2 row(s) OK" in out.stdout
    assert cli.json("location", "list") == []  # a dry run writes nothing
    cli("import", "locations", "locations.csv")
    # Every bad row, with its line: what the CLI checks itself (line 3: not a bed code) and
    # what only the gateway knows (line 4: no such location).
    bad = cli("import", "beds", "beds-bad.csv", "--dry-run", want=2)
    assert re.search(r"│\s+3\s+│\s+bed_code", bad.stderr), bad.stderr
    assert re.search(r"│\s+4\s+│\s+location_id\s+│.*sunrise-r999", bad.stderr), bad.stderr
    bad = cli("import", "beds", "beds-bad.csv", "--dry-run", "--json", want=2)
    errors = json.loads(bad.stdout)["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(3, "bed_code"), (4, "location_id")]
    assert cli.json("bed", "list") == []
    cli("import", "beds", "beds.csv")
    cli("import", "residents", "residents.csv")
    beds = cli.json("bed", "list")
    assert {(b["bed_code"], b["elder_code"]) for b in beds} == {
        ("BED-0101", "ELD-0101"), ("BED-0102", "ELD-0102"),
    }  # fmt: skip
    out = cli("bed", "show", "BED-0999", want=6)
    assert "BED-0999" in out.stderr and "hint:" in out.stderr

    # -- labels: codes only ----------------------------------------------------------------
    files = cli.json("label", "beds", "--out", "labels")["files"]
    assert sorted(Path(f).name for f in files) == ["BED-0101.png", "BED-0102.png", "labels.pdf"]
    assert (tmp_path / "labels" / "labels.pdf").read_bytes().startswith(b"%PDF-")

    # -- a button and a bed sensor for bed BED-0101 --------------------------------------
    with db.connect() as conn:  # the resident's daughter: must NOT be paged by the tests
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone) "
            "SELECT 'c-0101', resident_id, 'family', 'Daughter', 'daughter', '13800000000' "
            "FROM residents WHERE elder_code = 'ELD-0101'"
        )
    qr = tmp_path / "button.png"
    reg = cli("device", "register", "--kind", "button", "--model", "BT1", "--serial", "SN-1",
              "--qr-out", str(qr), "--no-qr")  # fmt: skip
    assert "will NOT be shown again" in reg.stderr
    assert stat.S_IMODE(qr.stat().st_mode) == 0o600
    button = json.loads(reg.stdout[reg.stdout.index("{") :])  # the JSON printed once
    assert button["mqtt"]["port"] == broker.port and button["mqtt"]["password"]
    sensor = cli.json("device", "register", "--kind", "bed_sensor", "--model", "BS1",
                      "--serial", "SN-2")["config"]  # fmt: skip
    cli("device", "bind", button["device_id"], "--bed", "BED-0101")
    cli("device", "bind", sensor["device_id"], "--bed", "BED-0101")
    other = cli.json("device", "register", "--kind", "button", "--model", "BT1",
                     "--serial", "SN-3")["config"]  # fmt: skip
    out = cli("device", "bind", other["device_id"], "--bed", "BED-0101", want=7)
    assert "hint:" in out.stderr  # the bed already has a button

    # -- acceptance tests: the device plays its part while the CLI waits ------------------
    with Device(button) as dev, running(cli.start("device", "test", button["device_id"],
                                                  "--non-interactive", "--timeout", "60",
                                                  "--json")) as proc:  # fmt: skip
        wait_until(lambda: _test_started(db, button["device_id"]), 30, "button test start")
        dev.send("event", p.encode_event, event="press")
        stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, (stdout, stderr)
    record = json.loads(stdout)
    assert record["result"] == "passed" and record["family_notified"] is False
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["press"]["status"] == "passed" and steps["press"]["latency_ms"] >= 0
    assert steps["no_page"]["status"] == "passed"

    with Device(sensor) as dev, running(cli.start("device", "test", sensor["device_id"],
                                                  "--non-interactive", "--timeout", "60",
                                                  "--json")) as proc:  # fmt: skip
        wait_until(lambda: _test_started(db, sensor["device_id"]), 30, "sensor test start")
        dev.send("event", p.encode_event, event="bed_entry")  # lie down
        for _ in range(3):
            dev.send("telemetry", p.encode_vitals, presence=True, hr=62.0, rr=14.0, movement=0.1)
        dev.send("event", p.encode_event, event="bed_exit")  # get up
        stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, (stdout, stderr)
    assert json.loads(stdout)["result"] == "passed"
    wearable = cli.json("device", "register", "--kind", "wearable", "--model", "WR1",
                        "--serial", "SN-5")["config"]  # fmt: skip
    cli("device", "bind", wearable["device_id"], "--resident", "ELD-0101")
    with Device(wearable) as dev, running(cli.start("device", "test", wearable["device_id"],
                                                    "--non-interactive", "--timeout", "60",
                                                    "--json")) as proc:  # fmt: skip
        wait_until(lambda: _test_started(db, wearable["device_id"]), 30, "wearable test start")
        dev.send("event", p.encode_event, event="worn")  # put it on
        dev.send("telemetry", p.encode_hr, hr=72.0)
        shake = np.zeros((50, 3))
        shake[:, 2] = 1.0
        shake[25] = (2.0, 2.0, 1.5)  # a 3.2 g jolt
        dev.send("telemetry", p.encode_accel, samples=shake)
        stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, (stdout, stderr)
    steps = {s["name"]: s for s in json.loads(stdout)["steps"]}
    assert steps["motion"]["observed"]["peak_g"] >= 2.5
    # Test mode: the press raised no incident and nobody was paged.
    assert db.scalar("SELECT count(*) FROM incidents") == 0
    assert db.scalar("SELECT count(*) FROM notification_outbox") == 0

    # -- a test nobody answers fails with exit 8 (and a record) ---------------------------
    out = cli("device", "test", other["device_id"], "--non-interactive", "--timeout", "10",
              want=8)  # fmt: skip
    assert "failed" in out.stdout and "hint:" in out.stderr

    # -- a test left running is aborted from another terminal -----------------------------
    with running(cli.start("device", "test", other["device_id"], "--non-interactive",
                           "--timeout", "60")) as proc:  # fmt: skip
        wait_until(lambda: _test_started(db, other["device_id"]), 30, "test start")
        aborted = cli.json("device", "test", other["device_id"], "--abort")
        assert aborted["result"] == "aborted"
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 8 and "ended elsewhere" in stderr

    # -- status and the commissioning records ---------------------------------------------
    status = cli.json("status", "--bed", "BED-0101")
    by_id = {r["device_id"]: r for r in status}
    assert by_id[button["device_id"]]["online"] is True
    assert by_id[button["device_id"]]["last_commissioning"]["result"] == "passed"
    records = cli.json("commissioning", "list")
    assert sorted(r["result"] for r in records) == [
        "aborted", "failed", "passed", "passed", "passed",
    ]  # fmt: skip
    cli("commissioning", "export", "--format", "csv", "--out", "records.csv")
    assert (tmp_path / "records.csv").read_text().count("\n") == 6
    cli("commissioning", "export", "--format", "pdf", "--out", "records.pdf")
    assert (tmp_path / "records.pdf").read_bytes().startswith(b"%PDF-")

    # -- rotate: the old password stops working -------------------------------------------
    rotated = cli.json("device", "rotate", other["device_id"])["config"]
    assert refused(other) and not refused(rotated)

    # -- replace the button: the new one takes over the bed; the old one is refused -------
    out = cli.json("device", "replace", button["device_id"], "--serial", "SN-4")
    new = out["config"]
    assert out["new"]["bed_code"] == "BED-0101" and out["old"]["active"] is False
    assert refused(button) and not refused(new)

    # -- decommission: the broker refuses the device from then on -------------------------
    out = cli("device", "decommission", new["device_id"], "--reason", "test", want=2)
    assert "--yes" in out.stderr  # no terminal to confirm on
    cli("device", "decommission", new["device_id"], "--reason", "end of test", "--yes")
    assert refused(new)
    assert cli.json("device", "show", new["device_id"])["active"] is False

    # -- sign out ---------------------------------------------------------------------------
    cli("logout")
    assert not token_file.exists()
    out = cli("bed", "list", want=4)
    assert "safehome login" in out.stderr
    # Nothing the tests did (a press, lying down, a shake) became an incident afterwards.
    assert db.scalar("SELECT count(*) FROM incidents") == 0
    assert all(c["mqtt"]["topic_prefix"].startswith(f"{PREFIX}/v1/{SITE}/")
               for c in (button, sensor, wearable, new))  # fmt: skip
