"""``safehome device emulate`` end to end: the configuration the CLI printed at
registration drives the emulator (a real MQTT connection to the broker the gateway manages)
while ``safehome device test`` waits in another process, as in docs/installer-guide.md
("Try it on the demo"). Every acceptance test must pass with the emulator alone; a fall it
plays outside test mode must raise a fall incident.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.api.auth import create_user
from tests.e2e import test_installer_cli
from tests.e2e.test_installer_cli import ADMIN_PW, Cli, _test_started, running
from tests.support import Broker, Database, DeviceClient, InProcessGateway, wait_until

pytestmark = pytest.mark.e2e
gateway = test_installer_cli.gateway  # the fixture: a gateway managing the test broker

SITE = "maple"
INSTALLER_PW = "inst-emu-pw-1"


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _acks(stdout: str) -> dict[str, str]:
    return {o["type"]: o["status"] for o in _lines(stdout) if o["what"] in ("ack", "no_ack")}


def _accept(cli: Cli, db: Database, config: dict[str, Any], *actions: str) -> dict[str, Any]:
    """Run ``device test`` and, once it started, the emulator with ``actions``; return the
    commissioning record (the test must pass) and check the emulator's acks."""
    dev = config["device_id"]
    with running(cli.start("device", "test", dev, "--non-interactive", "--timeout", "60",
                           "--json")) as proc:  # fmt: skip
        wait_until(lambda: _test_started(db, dev), 30, f"test start of {dev}")
        out = cli("device", "emulate", "--config", f"{dev}.json", *actions, "--seconds", "3",
                  "--json")  # fmt: skip
        stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, (stdout, stderr, out.stdout)
    emitted = _lines(out.stdout)
    assert emitted[0]["what"] == "connected" and emitted[-1]["what"] == "offline"
    assert set(_acks(out.stdout).values()) <= {"stored"}, out.stdout
    record: dict[str, Any] = json.loads(stdout)
    assert record["result"] == "passed" and record["family_notified"] is False
    return record


def _clear_retained(broker: Broker, configs: dict[str, dict[str, Any]]) -> None:
    """Remove the retained states the emulated devices left on the broker (shared by the
    session's tests: a later gateway must not start with devices it does not know)."""
    for config in configs.values():
        mqtt = config["mqtt"]
        with DeviceClient(broker.port, mqtt["username"], mqtt["password"]) as d:
            if not d.refused:
                d.publish(f"{mqtt['topic_prefix']}/state", b"", retain=True)


def test_the_emulator_passes_every_acceptance_test_from_the_printed_config(
    gateway: InProcessGateway, db: Database, broker: Broker, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    cli = Cli(tmp_path, gateway.api_url)
    (tmp_path / "xdg").mkdir()
    cli("login", "--gateway", cli.gateway, "--user", "admin", "--password-stdin",
        stdin=ADMIN_PW + "\n")  # fmt: skip
    cli("site", "create", SITE, "--name", "Maple Home", "--kind", "nursing_home")
    with db.connect() as conn:
        create_user(conn, "inst-emu", "installer", INSTALLER_PW, site_id=SITE)
    cli("login", "--user", "inst-emu", "--password-stdin", stdin=INSTALLER_PW + "\n")
    cli("location", "create", "maple-r1", "--kind", "room", "--label", "Room 1")
    cli("bed", "create", "BED-M1", "--location", "maple-r1")
    cli("resident", "create", "ELD-M1", "--name", "Zhao Lan", "--care-level", "2",
        "--bed", "BED-M1")  # fmt: skip
    with db.connect() as conn:  # must NOT be paged by the tests
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone) "
            "SELECT 'c-m1', resident_id, 'family', 'Son', 'son', '13900000000' "
            "FROM residents WHERE elder_code = 'ELD-M1'"
        )
    configs = {}
    for kind, model in (("button", "BT1"), ("bed_sensor", "BS1"), ("wearable", "WR1")):
        reg = cli("device", "register", "--kind", kind, "--model", model, "--serial",
                  f"EMU-{kind}", "--config-out", "new.json", "--no-qr")  # fmt: skip
        config = json.loads((tmp_path / "new.json").read_text())
        assert config["device_id"] in reg.stdout
        (tmp_path / "new.json").rename(tmp_path / f"{config['device_id']}.json")
        configs[kind] = config
    request.addfinalizer(lambda: _clear_retained(broker, configs))
    cli("device", "bind", configs["button"]["device_id"], "--bed", "BED-M1")
    cli("device", "bind", configs["bed_sensor"]["device_id"], "--bed", "BED-M1")
    cli("device", "bind", configs["wearable"]["device_id"], "--resident", "ELD-M1")

    # -- a device the emulator cannot be -------------------------------------------------
    out = cli("device", "emulate", "--config", f"{configs['button']['device_id']}.json",
              "lie-down", want=2)  # fmt: skip
    assert "cannot lie-down" in out.stderr

    # -- the acceptance tests, passed by the emulator alone --------------------------------
    record = _accept(cli, db, configs["button"], "press")
    assert {s["name"]: s["status"] for s in record["steps"]} == {
        "press": "passed",
        "no_page": "passed",
    }
    record = _accept(cli, db, configs["bed_sensor"], "lie-down", "get-up")
    steps = {s["name"]: s for s in record["steps"]}
    assert all(s["status"] == "passed" for s in steps.values())
    assert 40 <= steps["vitals"]["observed"]["heart_rate"] <= 130
    record = _accept(cli, db, configs["wearable"], "wear", "shake")
    motion = {s["name"]: s for s in record["steps"]}["motion"]["observed"]
    assert motion["reading"] == "accel" and motion["peak_g"] >= 2.5  # the shaking itself
    # Test mode: none of it became a resident's incident, nobody was paged. (Each clean stop
    # of the emulator is a device going offline: technical incidents, as for real ones.)
    assert db.scalar("SELECT count(*) FROM incidents WHERE NOT technical") == 0
    assert db.scalar("SELECT count(*) FROM notification_outbox") == 0
    # The emulator stopped cleanly: retained offline state, no will.
    wr = configs["wearable"]["device_id"]
    assert cli.json("status", "--device", wr)[0]["online"] is False

    # -- outside test mode a fall is real: it raises a fall incident ----------------
    out = cli("device", "emulate", "--config", f"{wr}.json", "fall", "--json")
    assert _acks(out.stdout) == {"fall": "stored"}
    wait_until(
        lambda: bool(db.scalar(
            "SELECT count(*) FROM incidents i JOIN devices d ON d.resident_id = i.resident_id "
            "WHERE d.device_id = %s AND i.type = 'fall'", (wr,),
        )),
        60, "the fall incident (confirmed when its 30 s cancel window ends)",
    )  # fmt: skip

    # -- a rotated password: the old configuration is refused (exit 4) ----------------------
    btn = configs["button"]["device_id"]
    cli("device", "rotate", btn, "--config-out", "rotated.json", "--no-qr")
    configs["button"] = json.loads((tmp_path / "rotated.json").read_text())
    out = cli("device", "emulate", "--config", f"{btn}.json", "press", want=4)
    assert "refused" in out.stderr and "safehome device rotate" in out.stderr
    out = cli("device", "emulate", "--config", "rotated.json", "press", "--json")
    assert _acks(out.stdout) == {"press": "stored"}
