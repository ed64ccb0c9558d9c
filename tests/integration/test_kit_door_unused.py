"""Door not opened for days (多日未开门) through MQTT to the incident and the door-knock
sweep (real Mosquitto and PostgreSQL; ``kit.door_unused_days`` injected as two seconds).

An elder's door contact, behind the home hub, reports an opening; no opening follows: the
gateway raises a ``door_unused`` care incident (priority 3, not technical, zh-CN and English
reason). Nobody resolves it: the visits sweep opens a door-knock task for the elder's
community worker, as for an unresolved ``no_activity``. The door opens: the detection is
resolved (the incident stays for staff, like every care incident).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices import protocol as p
from gateway import commissioning as com
from gateway.api.auth import create_user
from gateway.l10n import Lang
from gateway.l10n import reason as reason_sentence
from gateway.storage import visits as visits_store
from gateway.storage.analysis import load_last_seen
from gateway.visits.config import load_visits_config
from gateway.visits.service import sweep
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    gateway_settings,
    make_site,
    register_kit_device,
    wait_until,
)

pytestmark = pytest.mark.integration


def _door_incidents(db: Database) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT id, state, priority, technical, resident_id, reason, details FROM incidents "
        "WHERE type = 'door_unused' ORDER BY id"
    )


def test_a_door_not_opened_raises_a_welfare_check_and_a_door_knock(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, wearables=False, buttons=False)
    hub, hub_pw = register_kit_device(db, "home_hub", "HD1")
    door, _ = register_kit_device(db, "door_contact", "DD1", hub=hub)
    with db.connect() as conn:
        com.bind_device(conn, com.find_device(conn, door), None, "site-a-r0", "site-a-l0")
        worker = create_user(conn, "worker-kit", "community_worker", "pw-" + uuid.uuid4().hex)
        visits_store.assign_worker(conn, "site-a-r0", worker)
    broker.sync(db)
    settings = gateway_settings(
        db, broker,
        SAFEHOME_KIT__DOOR_UNUSED_DAYS=str(2.0 / 86400),  # two seconds
        SAFEHOME_ANALYSIS__CHECK_INTERVAL_S="0.2",
    )  # fmt: skip
    assert settings.kit.door_unused_days < 1e-4

    def send(msg_id: str, type_: str) -> None:
        raw = p.encode_event(door, msg_id, 1, int(time.time() * 1000), event=type_)
        client.publish(f"{PREFIX}/v1/site-a/{door}/event", raw)

    with InProcessGateway(settings), DeviceClient(broker.port, hub, hub_pw) as client:
        opened = time.time()
        send("open-1", "open")
        send("close-1", "close")
        wait_until(lambda: bool(_door_incidents(db)), 20, "the door_unused incident")
        [(incident, state, priority, technical, resident, reason, details)] = _door_incidents(db)
        assert (state, priority, technical, resident) == ("raised", 3, False, "site-a-r0")
        assert "多日未开门" in reason and "door not opened for" in reason
        assert abs(details["last_opened"] - opened) < 5
        expected: tuple[tuple[Lang, str], ...] = (
            ("zh-CN", "请电话或上门确认老人安好"), ("en", "check the resident"),
        )  # fmt: skip
        for lang, words in expected:
            said = reason_sentence(lang, "door_unused", details, 8 * 3600)
            assert said is not None and words in said
        # Nobody resolved it for longer than door_knock.auto_after_minutes: the sweep sends
        # the community worker to the door, as for an unanswered no_activity.
        cfg = load_visits_config()
        assert cfg.door_knock_auto_minutes > 0
        with db.connect() as conn:
            assert sweep(conn, cfg).tasks_opened == 0  # fresh: staff may still phone
            conn.execute(
                "UPDATE incidents SET raised_at = now() - %s * interval '1 minute' WHERE id = %s",
                (cfg.door_knock_auto_minutes + 1, incident),
            )
            assert sweep(conn, cfg).tasks_opened == 1
            assert sweep(conn, cfg).tasks_opened == 0
        assert db.rows(
            "SELECT reason, incident_id, worker_id FROM door_knock_tasks "
            "WHERE resident_id = 'site-a-r0'"
        ) == [("door_unused", incident, worker)]
        # The door opens: the condition clears (the incident stays for staff to resolve).
        send("open-2", "open")
        wait_until(
            lambda: bool(
                db.scalar("SELECT count(*) FROM detections WHERE kind = 'door_unused' AND resolved")
            ),
            20,
            "the door_unused resolution",
        )
        assert [r[1] for r in _door_incidents(db)] == ["raised"]
        send("close-2", "close")
        wait_until(lambda: len(_door_incidents(db)) == 1 and db.scalar(
            "SELECT count(*) FROM detections WHERE kind = 'door_unused' AND NOT resolved") == 2,
            20, "a second episode after two more quiet seconds")  # fmt: skip
        # The second episode joins the incident still open (one open per elder and type).
        assert db.scalar("SELECT trigger_count FROM incidents WHERE id = %s", (incident,)) == 2
    # A restart restores the door contact's last opening from the stored events.
    with db.connect() as conn:
        restored = load_last_seen(conn, datetime.now(UTC) - timedelta(days=1))
    opened_at = db.scalar(
        "SELECT extract(epoch FROM max(time)) FROM device_events WHERE msg_id = 'open-2'"
    )
    assert restored[door].door_opened == pytest.approx(float(opened_at), abs=0.01)
