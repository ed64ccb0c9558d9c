"""The incident's escalation timeline through the API, against a real gateway and database.

A fall escalates on a short ladder: the duty nurse on shift is paged, the supervisor tier
is skipped (nobody on shift), the family contact's first channel fails and her second one
delivers to a real local HTTP receiver; the nurse acknowledges and escalation stops. The
API names everyone by role and relation only: no login name, user id or phone number.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway.api.auth import create_user
from gateway.escalation import intake
from gateway.escalation.roster import DutyRole, add_shift
from gateway.escalation.timeline import Recipient, escalation_timeline
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration

PASSWORD = "pw-timeline-1"
PHONE = "13912345678"


@pytest.fixture
def receiver() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A local HTTP endpoint that accepts every POST (the family app's backend)."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield bodies, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_timeline_shows_tiers_pages_and_family_messages_without_personal_data(
    db: Database, broker: Broker, receiver: tuple[list[dict[str, Any]], str], tmp_path: Any
) -> None:
    bodies, url = receiver
    make_site(db, broker, site_id="site-a", beds=1)
    now = datetime.now(UTC)
    with db.connect() as conn:
        conn.execute("UPDATE residents SET consent_family_incidents = true")
        # E-mail first (no mail server configured: fails at once), then the webhook.
        conn.execute(
            "INSERT INTO contacts (contact_id, resident_id, kind, display_name, relation, phone,"
            " channels) VALUES ('fam1', 'site-a-r0', 'family', 'Wang Fang', 'daughter', %s,"
            ' \'["email", "webhook"]\')',
            (PHONE,),
        )
        nurse = create_user(conn, "nurse-login", "duty_staff", PASSWORD, site_id="site-a")
        add_shift(conn, "site-a", user_id=nurse, role=DutyRole.DUTY_STAFF,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=7))  # fmt: skip
    ladder = tmp_path / "escalation.toml"
    ladder.write_text(
        "[ladder]\n"
        '[[ladder.tiers]]\nname = "duty_staff"\naudience = "duty_staff"\ntimeout_s = 0.5\n'
        '[[ladder.tiers]]\nname = "supervisor"\naudience = "supervisor"\ntimeout_s = 0.5\n'
        '[[ladder.tiers]]\nname = "contacts"\naudience = "contacts"\ntimeout_s = 3\n'
    )  # escalation notices the acknowledgement when the contacts tier is next due
    settings = gateway_settings(
        db, broker,
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL=url,
    )  # fmt: skip
    with InProcessGateway(settings) as gw, httpx.Client(base_url=gw.api_url, timeout=10) as c:
        with db.connect() as conn, conn.transaction():
            incident, _ = IncidentService(conn).raise_or_join(
                Trigger(IncidentType.FALL, "site-a", now, "impact", resident_id="site-a-r0")
            )
            intake.start_escalation(conn, incident.id, "site-a")
        wait_until(lambda: bool(bodies), 20, "the family webhook")
        c.headers["Authorization"] = f"Bearer {access_token(gw.api_url, 'nurse-login', PASSWORD)}"
        assert c.post(f"/incidents/{incident.id}/acknowledge").status_code == 200
        wait_until(
            lambda: db.scalar(
                "SELECT stop_reason FROM incident_escalations WHERE incident_id = %s",
                (incident.id,),
            ) == "acknowledged",
            10, "escalation to stop",
        )  # fmt: skip
        resp = c.get(f"/incidents/{incident.id}")
    assert resp.status_code == 200
    body = resp.json()
    entries = body["escalation"]
    steps = [(e["kind"], e["tier_name"]) for e in entries if e["kind"] != "notification"]
    assert steps == [
        ("tier", "duty_staff"),
        ("page", "duty_staff"),
        ("tier_skipped", "supervisor"),
        ("tier", "contacts"),
        ("stopped", None),
    ]
    tier, page, skipped, contacts, stopped = (e for e in entries if e["kind"] != "notification")
    assert tier["reached"] == 1 and tier["audience"] == "duty_staff"
    assert page["recipient"] == {"kind": "staff", "role": "duty_staff", "relation": None,
                                 "label": None}  # fmt: skip
    assert (page["channel"], page["status"], page["page_kind"]) == ("console", "posted", "page")
    assert skipped["reason"] == "nobody to reach"
    assert contacts["reached"] == 1
    assert stopped["reason"] == "acknowledged"
    # The family contact: e-mail failed, then the webhook delivered; each with its attempts.
    messages = [e for e in entries if e["kind"] == "notification"]
    assert [(m["channel"], m["status"]) for m in messages] == [
        ("email", "failed"), ("webhook", "delivered")
    ]  # fmt: skip
    for m in messages:
        assert m["recipient"] == {"kind": "family", "role": None, "relation": "daughter",
                                  "label": None}  # fmt: skip
        assert m["result_at"] is not None and m["time"] <= m["result_at"]
    assert [a["result"] for a in messages[0]["attempts"]] == ["permanent"]
    assert messages[0]["detail"] == "channel not configured"
    assert [a["result"] for a in messages[1]["attempts"]] == ["delivered"]
    assert body["escalation_status"]["stop_reason"] == "acknowledged"
    # In the order it happened: the messages after the tier that sent them.
    assert [e["kind"] for e in entries] == [
        "tier", "page", "tier_skipped", "tier", "notification", "notification", "stopped"
    ]  # fmt: skip
    # Nobody's login name, user id, phone number or name in the escalation timeline.
    text = json.dumps(entries)
    for secret in ("nurse-login", nurse, PHONE, "Wang Fang"):
        assert secret not in text


# The outbox columns of staff paging (migration 0016 of the paging branch), added here when
# that migration is not in yet: the timeline must show staff messages either way.
_STAFF_OUTBOX = """
ALTER TABLE notification_outbox
    ADD COLUMN IF NOT EXISTS recipient_kind text NOT NULL DEFAULT 'contact',
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS page_id bigint,
    ALTER COLUMN contact_id DROP NOT NULL;
ALTER TABLE notification_attempts
    ADD COLUMN IF NOT EXISTS recipient_kind text NOT NULL DEFAULT 'contact',
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS page_id bigint,
    ALTER COLUMN contact_id DROP NOT NULL;
CREATE TABLE IF NOT EXISTS staff_page_acks (
    page_id     bigint NOT NULL REFERENCES staff_pages ON DELETE CASCADE,
    incident_id bigint NOT NULL,
    user_id     text NOT NULL,
    via         text NOT NULL,
    result      text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, user_id)
);
"""


def test_staff_pages_sent_and_answered_through_the_outbox_appear_on_the_timeline(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, site_id="site-a", beds=1)
    with db.connect_owner() as owner:
        owner.execute(_STAFF_OUTBOX)
    with db.connect() as conn:
        nurse = create_user(conn, "nurse-login", "duty_staff", PASSWORD, site_id="site-a")
        incident, _ = IncidentService(conn).raise_or_join(
            Trigger(IncidentType.FALL, "site-a", datetime.now(UTC), "t", resident_id="site-a-r0")
        )
        page_id = conn.execute(
            "INSERT INTO staff_pages (incident_id, site_id, tier, tier_name, sequence, user_id,"
            " role, kind, message) VALUES (%s, 'site-a', 0, 'duty_staff', 0, %s, 'duty_staff',"
            " 'page', 'm') RETURNING id",
            (incident.id, nurse),
        ).fetchone()
        assert page_id is not None
        outbox_id = conn.execute(
            "INSERT INTO notification_outbox (incident_id, channel, payload, state, attempts,"
            " delivered_at, recipient_kind, user_id, page_id)"
            " VALUES (%s, 'sms', '{}', 'delivered', 1, now(), 'staff', %s, %s) RETURNING id",
            (incident.id, nurse, page_id[0]),
        ).fetchone()
        assert outbox_id is not None
        conn.execute(
            "INSERT INTO notification_attempts (outbox_id, incident_id, channel, attempt, result,"
            " duration_ms, recipient_kind, user_id, page_id)"
            " VALUES (%s, %s, 'sms', 1, 'delivered', 40, 'staff', %s, %s)",
            (outbox_id[0], incident.id, nurse, page_id[0]),
        )
        # The nurse answers the SMS with the page's reply code.
        conn.execute(
            "INSERT INTO staff_page_acks (page_id, incident_id, user_id, via, result, used_at)"
            " VALUES (%s, %s, %s, 'sms', 'acknowledged', now() + interval '1 second')",
            (page_id[0], incident.id, nurse),
        )
        entries = escalation_timeline(conn, incident.id)
    assert [(e.kind, e.channel, e.status) for e in entries] == [
        ("page", "console", "posted"), ("notification", "sms", "delivered"),
        ("page_ack", "sms", "acknowledged"),
    ]  # fmt: skip
    assert entries[2].recipient == Recipient("staff", role="duty_staff")
    sms = entries[1]
    assert sms.recipient == Recipient("staff", role="duty_staff")
    assert (sms.tier_name, sms.sequence) == ("duty_staff", 0)
    assert [a.result for a in sms.attempts] == ["delivered"]
