"""The incident workflow against a real PostgreSQL: raise/join, lifecycle, cancel, audit."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from analytics.types import Detection, DetectionKind
from gateway import audit
from gateway.workflow.service import Actor, IncidentNotFoundError, IncidentService, Trigger
from gateway.workflow.transitions import IllegalTransitionError, IncidentType, Role, WorkflowError
from tests.support import Database

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
NURSE = Actor("staff-17", Role.DUTY_STAFF)
HEAD = Actor("staff-02", Role.SUPERVISOR)


class Clock:
    """A settable clock for the service."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _registry(db: Database, residents: int = 2) -> None:
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO sites (site_id, name, kind) VALUES ('s1', 'Site 1', 'nursing_home')"
        )
        for i in range(residents):
            conn.execute(
                "INSERT INTO residents (resident_id, elder_code, site_id, display_name, care_level)"
                " VALUES (%s, %s, 's1', %s, 2)",
                (f"r{i}", f"ELD-{i}", f"Resident {i}"),
            )


def _trigger(
    itype: IncidentType = IncidentType.FALL, resident: str | None = "r0", **kw: Any
) -> Trigger:
    return Trigger(
        type=itype, site_id="s1", time=kw.pop("time", T0), reason="impact then stillness",
        resident_id=resident, **kw,
    )  # fmt: skip


@pytest.fixture
def conn(db: Database) -> Any:
    _registry(db)
    with db.connect() as c:
        yield c


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(conn: psycopg.Connection[Any], clock: Clock) -> IncidentService:
    return IncidentService(conn, cancel_window_s=60, clock=clock)


def _events(db: Database, incident_id: int) -> list[str]:
    rows = db.rows("SELECT kind FROM incident_events WHERE incident_id = %s ORDER BY id",
                   (incident_id,))  # fmt: skip
    return [r[0] for r in rows]


def _audit_actions(db: Database) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in db.rows(
        "SELECT actor, action, target FROM audit_log ORDER BY seq")]  # fmt: skip


def test_raise_then_join(db: Database, svc: IncidentService, clock: Clock) -> None:
    first, created = svc.raise_or_join(_trigger())
    assert created and first.state == "raised" and first.priority == 1 and first.trigger_count == 1
    assert first.raised_at == T0 and first.subject == "r0" and not first.technical
    clock.advance(30)
    again, created = svc.raise_or_join(_trigger(time=T0 + timedelta(seconds=30)))
    assert not created and again.id == first.id and again.trigger_count == 2
    assert again.last_trigger_at == T0 + timedelta(seconds=30) and again.first_trigger_at == T0
    assert _events(db, first.id) == ["raised", "triggered"]
    assert _audit_actions(db) == [("system", "incident.raised", f"incident:{first.id}")]
    # another type or another resident: separate incidents
    other, created = svc.raise_or_join(_trigger(IncidentType.EMERGENCY_CALL))
    assert created and other.id != first.id
    third, created = svc.raise_or_join(_trigger(resident="r1"))
    assert created and third.id not in (first.id, other.id)


def test_technical_incident_keyed_by_subject(svc: IncidentService) -> None:
    t = Trigger(IncidentType.DEVICE_OFFLINE, "s1", T0, "no heartbeat for 900 s", subject="dev-1")
    inc, created = svc.raise_or_join(t)
    assert created and inc.technical and inc.resident_id is None and inc.priority == 3
    _, created = svc.raise_or_join(t)
    assert not created
    _, created = svc.raise_or_join(
        Trigger(IncidentType.DEVICE_OFFLINE, "s1", T0, "no heartbeat", subject="dev-2")
    )
    assert created
    cleared = svc.clear(inc.id)
    assert cleared.state == "resolved" and cleared.outcome == "condition_cleared"
    _, created = svc.raise_or_join(t)  # a resolved incident no longer absorbs triggers
    assert created


def test_care_incident_of_a_place_when_no_resident(db: Database, svc: IncidentService) -> None:
    """An alarm from a device bound to no resident (a room's pull-cord, a vacant bed) is a
    care incident of its place, one open per place and type; it never fails (issue 9 §3)."""
    with pytest.raises(WorkflowError, match="needs a resident or a place"):
        svc.raise_or_join(_trigger(resident=None))
    room = _trigger(IncidentType.EMERGENCY_CALL, resident=None, subject="room-7")
    first, created = svc.raise_or_join(room)
    assert created and first.resident_id is None and first.subject == "room-7"
    assert not first.technical and first.priority == 1
    again, created = svc.raise_or_join(room)
    assert not created and again.id == first.id and again.trigger_count == 2
    other, created = svc.raise_or_join(replace(room, subject="room-8"))
    assert created and other.id != first.id
    resident, created = svc.raise_or_join(_trigger(IncidentType.EMERGENCY_CALL))
    assert created and resident.id not in (first.id, other.id)
    with pytest.raises(psycopg.errors.UniqueViolation):  # the database holds the rule too
        db.scalar(
            "INSERT INTO incidents (site_id, subject, type, priority, technical, "
            "first_trigger_at, last_trigger_at, raised_at, reason) "
            "VALUES ('s1', 'room-7', 'emergency_call', 1, false, now(), now(), now(), 'x') "
            "RETURNING id"
        )


def test_open_incident_unique_in_database(db: Database, svc: IncidentService) -> None:
    svc.raise_or_join(_trigger())
    with db.connect() as c, pytest.raises(psycopg.errors.UniqueViolation):
        c.execute(
            "INSERT INTO incidents (site_id, resident_id, subject, type, priority, technical, "
            "first_trigger_at, last_trigger_at, raised_at, reason) "
            "VALUES ('s1', 'r0', 'r0', 'fall', 1, false, now(), now(), now(), 'dup')"
        )
    assert db.scalar("SELECT count(*) FROM incidents") == 1


def test_concurrent_triggers_make_one_incident(db: Database) -> None:
    _registry(db)
    n = 20
    barrier = threading.Barrier(n)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fire() -> None:
        try:
            with db.connect() as c:
                service = IncidentService(c)
                barrier.wait(timeout=30)
                inc, created = service.raise_or_join(_trigger())
            with lock:
                results.append((inc.id, created))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == n
    assert len({i for i, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert db.rows("SELECT count(*), max(trigger_count) FROM incidents") == [(1, n)]
    assert db.scalar("SELECT count(*) FROM incident_events") == n
    with db.connect() as c:
        assert audit.verify(c).ok


def test_full_lifecycle_with_audit(db: Database, svc: IncidentService, clock: Clock) -> None:
    inc, _ = svc.raise_or_join(_trigger())
    clock.advance(45)
    inc = svc.acknowledge(inc.id, NURSE)
    assert inc.state == "acknowledged" and inc.acknowledged_by == NURSE.id
    clock.advance(15)
    inc = svc.dispatch(inc.id, NURSE, responder="staff-23")
    assert inc.state == "dispatched" and inc.responder == "staff-23"
    clock.advance(240)
    inc = svc.on_scene(inc.id, Actor("staff-23", Role.DUTY_STAFF))
    clock.advance(600)
    inc = svc.resolve(inc.id, Actor("staff-23", Role.DUTY_STAFF), "assisted", "helped up")
    assert inc.state == "resolved" and inc.outcome == "assisted"
    assert inc.resolution_notes == "helped up"
    clock.advance(3600)
    inc = svc.close(inc.id, HEAD)
    assert inc.state == "closed" and inc.closed_by == HEAD.id
    assert inc.time_to_acknowledge == timedelta(seconds=45)
    assert inc.time_to_on_scene == timedelta(seconds=300)
    assert inc.time_to_resolve == timedelta(seconds=900)
    assert _events(db, inc.id) == [
        "raised", "acknowledged", "dispatched", "on_scene", "resolved", "closed"]  # fmt: skip
    target = f"incident:{inc.id}"
    assert _audit_actions(db) == [
        ("system", "incident.raised", target),
        ("staff-17", "incident.acknowledge", target),
        ("staff-17", "incident.dispatch", target),
        ("staff-23", "incident.arrive", target),
        ("staff-23", "incident.resolve", target),
        ("staff-02", "incident.close", target),
    ]
    resolve_data = db.scalar("SELECT data FROM audit_log WHERE action = 'incident.resolve'")
    expected = {"from": "on_scene", "to": "resolved", "role": "duty_staff", "outcome": "assisted"}
    assert resolve_data == expected
    assert svc.get(inc.id) == inc
    timeline = svc.timeline(inc.id)
    assert [(e.kind, e.actor) for e in timeline][:3] == [
        ("raised", "system"), ("acknowledged", "staff-17"), ("dispatched", "staff-17")]  # fmt: skip
    assert timeline[2].data["responder"] == "staff-23"
    assert [e.time - T0 for e in timeline][1:] == [
        timedelta(seconds=s) for s in (45, 60, 300, 900, 4500)]  # fmt: skip
    with db.connect() as c:
        result = audit.verify(c)
    assert result.ok and result.entries == 6


def _snapshot(db: Database) -> tuple[Any, ...]:
    return (
        db.rows("SELECT * FROM incidents ORDER BY id"),
        db.scalar("SELECT count(*) FROM incident_events"),
        db.scalar("SELECT count(*) FROM audit_log"),
    )


def test_illegal_transition_leaves_no_trace(db: Database, svc: IncidentService) -> None:
    inc, _ = svc.raise_or_join(_trigger())
    before = _snapshot(db)
    with pytest.raises(IllegalTransitionError, match="cannot dispatch an incident that is raised"):
        svc.dispatch(inc.id, NURSE, responder="staff-23")
    with pytest.raises(IllegalTransitionError, match="technical incidents only"):
        svc.clear(inc.id)
    assert _snapshot(db) == before
    svc.acknowledge(inc.id, NURSE)
    svc.resolve(inc.id, NURSE, "false_alarm")
    mid = _snapshot(db)
    with pytest.raises(
        IllegalTransitionError, match="cannot dispatch an incident that is resolved"
    ):
        svc.dispatch(inc.id, NURSE, responder="staff-23")
    with pytest.raises(IllegalTransitionError, match="role duty_staff may not close"):
        svc.close(inc.id, NURSE)
    assert _snapshot(db) == mid
    assert before != mid
    with pytest.raises(WorkflowError, match="unknown outcome"):
        svc.resolve(inc.id, NURSE, "made_up")
    with pytest.raises(IncidentNotFoundError):
        svc.acknowledge(999_999, NURSE)
    assert _snapshot(db) == mid


def test_resident_cancel_inside_window(db: Database, svc: IncidentService, clock: Clock) -> None:
    inc, _ = svc.raise_or_join(_trigger(IncidentType.EMERGENCY_CALL))
    cancelled = svc.cancel_by_resident("r0", at=T0 + timedelta(seconds=20), device_id="bt-0")
    assert cancelled.id == inc.id and cancelled.state == "cancelled"
    assert cancelled.cancel_source == "resident" and cancelled.cancelled_by == "bt-0"
    assert _events(db, inc.id) == ["raised", "cancelled_by_resident"]
    assert _audit_actions(db)[-1] == ("bt-0", "incident.cancel_by_resident", f"incident:{inc.id}")
    # nothing left to cancel; a new call raises a new incident
    with pytest.raises(IncidentNotFoundError):
        svc.cancel_by_resident("r0", at=T0 + timedelta(seconds=25))
    _, created = svc.raise_or_join(_trigger(IncidentType.EMERGENCY_CALL))
    assert created


def test_resident_cancel_outside_window_or_after_ack(db: Database, svc: IncidentService) -> None:
    inc, _ = svc.raise_or_join(_trigger(IncidentType.FALL))
    before = _snapshot(db)
    with pytest.raises(IllegalTransitionError, match=r"61 s after it was raised \(window 60 s\)"):
        svc.cancel_by_resident("r0", at=T0 + timedelta(seconds=61))
    assert _snapshot(db) == before
    svc.acknowledge(inc.id, NURSE)
    with pytest.raises(IllegalTransitionError, match="that is acknowledged"):
        svc.cancel_by_resident("r0", at=T0 + timedelta(seconds=5))
    # other types are never cancelled by the resident
    svc.raise_or_join(_trigger(IncidentType.NIGHT_BED_EXIT, resident="r1"))
    with pytest.raises(IncidentNotFoundError):
        svc.cancel_by_resident("r1", at=T0)


def test_staff_cancel(svc: IncidentService) -> None:
    inc, _ = svc.raise_or_join(_trigger())
    with pytest.raises(IllegalTransitionError, match="role duty_staff may not cancel"):
        svc.cancel_by_staff(inc.id, NURSE, "test alarm")
    out = svc.cancel_by_staff(inc.id, HEAD, "test alarm during maintenance")
    assert out.state == "cancelled" and out.cancel_source == "staff"


def test_record_read_is_audited(db: Database, svc: IncidentService) -> None:
    svc.record_read("staff-17", "r0", "vitals")
    assert db.rows("SELECT actor, action, target, data FROM audit_log") == [
        ("staff-17", "health_data.read", "resident:r0", {"what": "vitals"})]  # fmt: skip


def test_audit_append_in_callers_transaction(db: Database) -> None:
    with db.connect() as c:
        with c.transaction():
            e1 = audit.append(c, "system", "a", "t", {"k": 'ü\n"x"', "n": 1.5, "z": [1, None]})
        with pytest.raises(RuntimeError), c.transaction():
            audit.append(c, "system", "rolled-back", "t")
            raise RuntimeError
        with c.transaction():
            e2 = audit.append(c, "system", "b", "t")
        assert e1.prev_hash == audit.GENESIS_HASH and e2.prev_hash == e1.hash
        assert [r[0] for r in c.execute("SELECT action FROM audit_log ORDER BY seq")] == ["a", "b"]
        result = audit.verify(c)
    assert result.ok and result.entries == 2 and result.head_hash == e2.hash


def test_concurrent_audit_appends_stay_linear(db: Database) -> None:
    n, per = 8, 10
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with db.connect() as c:
                barrier.wait(timeout=30)
                for j in range(per):
                    with c.transaction():
                        audit.append(c, f"w{i}", "x", f"t{j}", {"i": i, "j": j})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with db.connect() as c:
        result = audit.verify(c)
    assert result.ok and result.entries == n * per


AUDIT_REWRITES = ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                  "TRUNCATE audit_log")  # fmt: skip


def test_audit_log_refuses_update_delete_truncate(db: Database, svc: IncidentService) -> None:
    svc.record_read("staff-17", "r0", "vitals")
    with db.connect_owner() as c:  # even the owner: the append-only triggers refuse
        for sql in AUDIT_REWRITES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                c.execute(sql.encode())
    assert db.scalar("SELECT count(*) FROM audit_log") == 1


def test_gateway_role_cannot_disable_the_audit_triggers_or_rewrite(
    db: Database, svc: IncidentService
) -> None:
    svc.record_read("staff-17", "r0", "vitals")
    with db.connect() as c:  # the gateway's role: no privilege to change history at all
        for sql in (
            *AUDIT_REWRITES,
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "ALTER TABLE audit_log OWNER TO CURRENT_USER",
            "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "SET session_replication_role = replica",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.encode())
        # ... nor to bypass retention limits or grant itself more.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT safehome_drop_chunks('audit_log', interval '1 year')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT safehome_grant_app(current_user)")
        owner = c.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_log'::regclass"
        ).fetchone()
        assert owner == (db.owner,)
    assert db.rows("SELECT actor FROM audit_log") == [("staff-17",)]
    with db.connect() as c:
        assert audit.verify(c).ok


def _fill(svc: IncidentService, n: int = 5) -> None:
    for i in range(n):
        svc.record_read("staff-17", "r0", f"read-{i}")


def test_verify_finds_edited_entry(db: Database, svc: IncidentService) -> None:
    _fill(svc)
    seq = db.scalar("SELECT seq FROM audit_log ORDER BY seq OFFSET 2 LIMIT 1")
    with db.connect_owner() as c:  # the owner can disable its triggers: simulate a tamperer
        c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        c.execute('UPDATE audit_log SET data = \'{"what": "nothing"}\' WHERE seq = %s', (seq,))
        c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        result = audit.verify(c)
    assert not result.ok and result.broken_seq == seq and "hash" in (result.problem or "")


def test_verify_finds_deleted_entry(db: Database, svc: IncidentService) -> None:
    _fill(svc)
    seqs = [r[0] for r in db.rows("SELECT seq FROM audit_log ORDER BY seq")]
    with db.connect_owner() as c:
        c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        c.execute("DELETE FROM audit_log WHERE seq = %s", (seqs[1],))
        c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        result = audit.verify(c)
    assert not result.ok and result.broken_seq == seqs[2] and "link" in (result.problem or "")


def test_verify_finds_forged_insert(db: Database, svc: IncidentService) -> None:
    _fill(svc, 3)
    head = db.scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    with db.connect() as c:  # bypass audit_append: a row with a made-up hash
        forged = c.execute(
            "INSERT INTO audit_log (time, actor, action, target, data, prev_hash, hash) "
            "VALUES (now(), 'staff-99', 'incident.acknowledge', 'incident:1', '{}', %s, %s) "
            "RETURNING seq",
            (head, "f" * 64),
        ).fetchone()
        assert forged is not None
        result = audit.verify(c)
    assert not result.ok and result.broken_seq == forged[0]
    svc.record_read("staff-17", "r0", "after")  # the chain goes on from the forged head ...
    with db.connect() as c:
        assert audit.verify(c).broken_seq == forged[0]  # ... and the break is still reported


def test_python_and_sql_canonical_forms_agree(db: Database) -> None:
    with db.connect() as c:
        with c.transaction():
            audit.append(c, "ünï", 'act\t"q"', "t\\x", {"b": {"y": 1, "x": [True, 2.50]}})
        row = c.execute(
            "SELECT audit_entry_text(seq, time, actor, action, target, data), seq, time, actor,"
            " action, target, data::text FROM audit_log"
        ).fetchone()
    assert row is not None
    sql_text, seq, time, actor, action, target, data_text = row
    assert audit.canonical_text(seq, time, actor, action, target, data_text=data_text) == sql_text


def test_cli_audit_verify(
    db: Database,
    svc: IncidentService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main

    env = {"HOST": "127.0.0.1", "PORT": str(db.port), "NAME": db.name, "USER": db.user,
           "PASSWORD": db.password}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(f"SAFEHOME_DATABASE__{key}", value)
    monkeypatch.delenv("SAFEHOME_CONFIG", raising=False)
    _fill(svc, 3)
    assert main(["audit", "verify"]) == 0
    assert "audit chain intact: 3 entries" in capsys.readouterr().out
    seq = db.scalar("SELECT max(seq) FROM audit_log")
    with db.connect_owner() as c:
        c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        c.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = %s", (seq,))
    assert main(["audit", "verify"]) == 1
    assert f"BROKEN at seq {seq}" in capsys.readouterr().out


def test_trigger_from_detection(svc: IncidentService) -> None:
    det = Detection(
        DetectionKind.HUB_OFFLINE, "loc-3", T0.timestamp(), "all 3 devices of the home silent",
        details={"devices": 3},
    )  # fmt: skip
    inc, created = svc.raise_or_join(Trigger.from_detection(det, "s1"))
    assert created and inc.type == "hub_offline" and inc.subject == "loc-3"
    assert inc.first_trigger_at == T0 and inc.details == {"devices": 3} and inc.priority == 2
    with pytest.raises(WorkflowError, match="resolved hub_offline detection"):
        Trigger.from_detection(replace(det, resolved=True), "s1")


def test_cancel_window_runs_from_the_alarm(
    db: Database, svc: IncidentService, clock: Clock
) -> None:
    clock.advance(180)  # the gateway stored the press 3 minutes late (ingest backlog)
    inc, _ = svc.raise_or_join(_trigger(IncidentType.EMERGENCY_CALL))
    assert inc.raised_at == T0 + timedelta(seconds=180) and inc.first_trigger_at == T0
    out = svc.cancel_by_resident("r0", at=T0 + timedelta(seconds=20))
    assert out.state == "cancelled" and out.cancelled_at == T0 + timedelta(seconds=20)


def test_audit_append_refuses_repeatable_read(db: Database) -> None:
    with db.connect() as c:
        c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with (
            pytest.raises(psycopg.errors.RaiseException, match="READ COMMITTED"),
            c.transaction(),
        ):
            audit.append(c, "system", "x", "t")
    assert db.scalar("SELECT count(*) FROM audit_log") == 0
