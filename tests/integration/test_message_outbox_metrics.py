"""The message outbox gauges (visit notices, platform push) read from a real database by the
care-path collector: depth, oldest and most overdue by kind, apart from the incident outbox's
gauges (which these rows never move)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.auth import create_user
from gateway.carepath_metrics import CarePathCollector
from gateway.storage.messages import insert_message
from tests.support import Database

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(db: Database) -> Samples:
    registry = CollectorRegistry()
    registry.register(
        CarePathCollector(
            lambda: psycopg.connect(db.conninfo(), autocommit=True), cache_s=0, gap_timeout_s=1
        )
    )
    out: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _queue(conn: psycopg.Connection[Any], kind: str, key: str, user: str | None) -> int:
    row = insert_message(
        conn, kind=kind, subject="site:s1", dedupe_key=key,
        recipient_kind="user" if user else "platform", user_id=user,
        channel="sms" if user else "platform", payload={},
    )  # fmt: skip
    assert row is not None
    return row


def test_message_outbox_gauges_by_kind(db: Database) -> None:
    empty = _scrape(db)
    for kind in ("visit_overdue", "platform_push"):
        for name in ("depth", "oldest_age_seconds", "overdue_seconds"):
            assert empty[(f"safehome_message_outbox_{name}", (("kind", kind),))] == 0.0
    with db.connect() as conn:
        conn.execute("INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'S', 'nursing_home')")
        supervisor = create_user(conn, "sup", "supervisor", "pw-0123456789abcdef", site_id="s1")
        late = _queue(conn, "visit_overdue", "n1", supervisor)  # due 20 min ago, not sent
        _queue(conn, "visit_overdue", "n2", supervisor)  # due now
        sent = _queue(conn, "visit_overdue", "n3", supervisor)
        backing_off = _queue(conn, "platform_push", "p1", None)  # an hour old, due in 10 min
        conn.execute(
            "UPDATE notification_outbox SET created_at = now() - interval '20 minutes', "
            "next_attempt_at = now() - interval '20 minutes' WHERE id = %s", (late,),
        )  # fmt: skip
        conn.execute("UPDATE notification_outbox SET state = 'delivered' WHERE id = %s", (sent,))
        conn.execute(
            "UPDATE notification_outbox SET created_at = now() - interval '1 hour', "
            "next_attempt_at = now() + interval '10 minutes' WHERE id = %s", (backing_off,),
        )  # fmt: skip
    s = _scrape(db)

    def v(name: str, kind: str) -> float:
        return s[(f"safehome_message_outbox_{name}", (("kind", kind),))]

    assert v("depth", "visit_overdue") == 2.0  # the delivered one is not waiting
    assert 1190 < v("oldest_age_seconds", "visit_overdue") < 1300
    assert 1190 < v("overdue_seconds", "visit_overdue") < 1300
    assert v("depth", "platform_push") == 1.0
    assert 3590 < v("oldest_age_seconds", "platform_push") < 3700
    assert v("overdue_seconds", "platform_push") == 0.0  # waiting out its backoff: not late
    # the incident outbox (and its critical alert) does not see these rows
    assert s[("safehome_notification_outbox_depth", ())] == 0.0
    assert s[("safehome_notification_outbox_overdue_seconds", ())] == 0.0
