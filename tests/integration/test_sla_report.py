"""The SLA report against a real PostgreSQL: incidents made through the IncidentService with a
controlled clock, offline detections inserted; exact KPIs, CSV, JSON, PNG and the CLI."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.errors import InvalidError
from gateway.reports.sla import INCIDENT_CSV_COLUMNS, SiteNotFoundError, SlaReport, sla_report
from gateway.reports.sla_targets import load_local_targets, local_targets
from gateway.workflow.service import Actor, IncidentService, Trigger
from gateway.workflow.transitions import IncidentType, Outcome, Role
from tests.support import Database

NURSE = Actor("staff-17", Role.DUTY_STAFF)
MONTH = "2026-10"  # local (UTC+8): 2026-09-30 16:00 UTC .. 2026-10-31 16:00 UTC
MONTH_START = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
MONTH_END = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
MONTH_S = 31 * 86400
AS_OF = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)


def utc(day: int, hour: int = 2, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class Clock:
    """A settable clock for the service."""

    def __init__(self) -> None:
        self.now = utc(1)

    def __call__(self) -> datetime:
        return self.now

    def at(self, t: datetime) -> None:
        self.now = t


def _registry(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO sites (site_id, name, kind, utc_offset_s) "
        "VALUES ('s1', 'Site 1', 'nursing_home', 28800)"
    )
    for loc in ("l1", "l2"):
        conn.execute(
            "INSERT INTO locations (location_id, site_id, kind, label)"
            " VALUES (%s, 's1', 'room', %s)",
            (loc, loc),
        )
    for i in range(3):
        conn.execute(
            "INSERT INTO residents (resident_id, elder_code, site_id, display_name, care_level)"
            " VALUES (%s, %s, 's1', %s, 2)",
            (f"r{i}", f"ELD-{i}", f"Resident {i}"),
        )
    before = datetime(2026, 9, 1, tzinfo=UTC)
    devices = [
        ("d1", "l1", before, None, True),
        ("d2", "l1", before, None, True),
        ("d3", "l2", before, None, True),
        ("d4", "l2", utc(16, 16), None, True),  # commissioned 2026-10-17 00:00 local
        ("d5", "l2", before, datetime(2026, 9, 15, tzinfo=UTC), False),  # gone before October
    ]
    for dev, loc, commissioned, decommissioned, active in devices:
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, model, serial, location_id,"
            " mqtt_password_hash, active, commissioned_at, decommissioned_at)"
            " VALUES (%s, 's1', 'button', 'BT1', %s, %s, 'x', %s, %s, %s)",
            (dev, dev, loc, active, commissioned, decommissioned),
        )


def _episode(
    conn: psycopg.Connection[Any],
    kind: str,
    subject: str,
    started: datetime,
    ended: datetime | None,
    *,
    resolved_row: bool = True,
) -> None:
    """One offline episode: the raise row, and its resolved row when it ended."""
    closed = ended if ended is not None else None
    conn.execute(
        "INSERT INTO detections (kind, subject, technical, time, started, closed_at, reason)"
        " VALUES (%s, %s, true, %s, %s, %s, 'silent')",
        (kind, subject, started + timedelta(seconds=600), started, closed),
    )
    if ended is not None and resolved_row:
        conn.execute(
            "INSERT INTO detections (kind, subject, technical, time, started, resolved, reason)"
            " VALUES (%s, %s, true, %s, %s, true, 'back')",
            (kind, subject, ended, started),
        )


def _trigger(itype: IncidentType, resident: str | None, t: datetime, **kw: Any) -> Trigger:
    return Trigger(type=itype, site_id="s1", time=t, reason="test", resident_id=resident, **kw)


def _populate(conn: psycopg.Connection[Any]) -> dict[str, int]:
    clock = Clock()
    svc = IncidentService(conn, cancel_window_s=60, clock=clock)
    ids: dict[str, int] = {}

    def raise_at(name: str, itype: IncidentType, resident: str | None, t: datetime,
                 **kw: Any) -> int:  # fmt: skip
        clock.at(t)
        inc, created = svc.raise_or_join(_trigger(itype, resident, t, **kw))
        assert created
        ids[name] = inc.id
        return inc.id

    def step(t0: datetime, seconds: float) -> None:
        clock.at(t0 + timedelta(seconds=seconds))

    # 1: fall, answered in 30 s, on scene at 300 s, resolved (assisted) at 900 s.
    t = utc(5)
    i = raise_at("fast_fall", IncidentType.FALL, "r0", t)
    step(t, 30)
    svc.acknowledge(i, NURSE)
    step(t, 60)
    svc.dispatch(i, NURSE, "staff-20")
    step(t, 300)
    svc.on_scene(i, NURSE)
    step(t, 900)
    svc.resolve(i, NURSE, Outcome.ASSISTED)
    # 2: emergency call, answered in 45 s, a false alarm resolved at 600 s.
    t = utc(6)
    i = raise_at("false_call", IncidentType.EMERGENCY_CALL, "r1", t)
    step(t, 45)
    svc.acknowledge(i, NURSE)
    step(t, 600)
    svc.resolve(i, NURSE, Outcome.FALSE_ALARM)
    # 3: fall, answered in 120 s (misses 60 s, meets 180 s), on scene 1200 s, hospital.
    t = utc(7)
    i = raise_at("slow_fall", IncidentType.FALL, "r2", t)
    step(t, 120)
    svc.acknowledge(i, NURSE)
    step(t, 130)
    svc.dispatch(i, NURSE, "ambulance")
    step(t, 1200)
    svc.on_scene(i, NURSE)
    step(t, 1800)
    svc.resolve(i, NURSE, Outcome.HOSPITAL_TRANSFER)
    # 4: emergency call the resident cancels after 20 s ("I'm OK"): not counted.
    t = utc(8)
    raise_at("cancelled_call", IncidentType.EMERGENCY_CALL, "r0", t)
    svc.cancel_by_resident("r0", t + timedelta(seconds=20))
    # 5: fall answered after 400 s (late), a false alarm resolved at 500 s.
    t = utc(9)
    i = raise_at("late_fall", IncidentType.FALL, "r1", t)
    step(t, 400)
    svc.acknowledge(i, NURSE)
    step(t, 500)
    svc.resolve(i, NURSE, Outcome.FALSE_ALARM)
    # 6: not_up at 23:59 local on 31 October, never answered: still open, late.
    raise_at("open_not_up", IncidentType.NOT_UP, "r2", utc(31, 15, 59))
    # Technical: device offline, cleared by the system.
    t = utc(10)
    i = raise_at("offline", IncidentType.DEVICE_OFFLINE, None, t, subject="d1")
    step(t, 7200)
    svc.clear(i)
    # Outside the local month: 00:00 local on 1 November and 23:00 local on 30 September.
    raise_at("november", IncidentType.FALL, "r0", MONTH_END)
    raise_at("september", IncidentType.EMERGENCY_CALL, "r1", utc(30, 15, month=9))

    # Offline episodes (see test_device_online_rate for the arithmetic).
    _episode(conn, "device_offline", "d1", utc(10, 0), utc(10, 2))  # d1: 7200 s
    _episode(conn, "hub_offline", "l1", utc(12, 0), utc(12, 1), resolved_row=False)  # d1, d2
    _episode(conn, "device_offline", "d2", utc(30, 10, month=9), utc(1, 16))  # 86400 s in Oct
    _episode(conn, "site_offline", "s1", utc(20, 0), utc(20, 0, 30))  # every device: 1800 s
    _episode(conn, "device_offline", "d3", utc(31, 12), None)  # open: 14400 s to month end
    _episode(conn, "site_offline", "s2", utc(3, 0), utc(4, 0))  # another site
    _episode(conn, "device_offline", "d5", utc(3, 0), utc(4, 0))  # decommissioned device
    return ids


@pytest.fixture
def conn(db: Database) -> Iterator[psycopg.Connection[Any]]:
    with db.connect() as c:
        _registry(c)
        yield c


@pytest.fixture
def populated(conn: psycopg.Connection[Any]) -> tuple[psycopg.Connection[Any], dict[str, int]]:
    return conn, _populate(conn)


@pytest.fixture
def report(populated: tuple[psycopg.Connection[Any], dict[str, int]]) -> SlaReport:
    return sla_report(populated[0], "s1", MONTH, now=AS_OF)


def test_incidents_of_the_local_month(
    report: SlaReport, populated: tuple[psycopg.Connection[Any], dict[str, int]]
) -> None:
    ids = populated[1]
    got = {i.row.id for i in report.incidents}
    assert got == {ids[n] for n in ("fast_fall", "false_call", "slow_fall", "cancelled_call",
                                    "late_fall", "open_not_up", "offline")}  # fmt: skip
    assert (report.care_count, report.technical_count) == (6, 1)
    assert report.period_start == MONTH_START
    assert report.period_end == MONTH_END


def test_answer_time_kpis(
    report: SlaReport, populated: tuple[psycopg.Connection[Any], dict[str, int]]
) -> None:
    ids = populated[1]
    # Counted: fast_fall (30 s), false_call (45 s), slow_fall (120 s), late_fall (400 s),
    # open_not_up (deadlines passed); the resident's cancel at 20 s is not counted.
    assert (report.within[60].hits, report.within[60].counted) == (2, 5)
    assert (report.within[180].hits, report.within[180].counted) == (3, 5)
    assert [(t.target.name, t.target.share, t.met) for t in report.targets] == [
        ("answered_60s_local", 0.95, False),  # [default.sla] of config/response_targets.toml
        ("answered_180s_local", 0.99, False),
        ("answered_60s_tsa", 0.975, False),
        ("answered_60s_en", 0.985, False),
        ("answered_180s_tsa", 0.99, False),
        ("on_scene_45min", 0.9, True),  # fast_fall 300 s and slow_fall 1200 s: both dispatched
        ("on_scene_60min", 1.0, True),
    ]
    assert (report.attendance[2700].hits, report.attendance[2700].counted) == (2, 2)
    assert (report.acknowledge.count, report.acknowledge.median_s, report.acknowledge.p90_s) == (
        4, 45.0, 400.0)  # fmt: skip
    assert (report.on_scene.count, report.on_scene.median_s, report.on_scene.p90_s) == (
        2, 300.0, 1200.0)  # fmt: skip
    assert (report.resolve.count, report.resolve.median_s, report.resolve.p90_s) == (
        4, 600.0, 1800.0)  # fmt: skip
    assert [i.row.id for i in report.late] == [ids["late_fall"], ids["open_not_up"]]


def test_false_alarms_and_cancellations(report: SlaReport) -> None:
    rates = {f.type: (f.false_alarms, f.resolved) for f in report.false_alarms}
    assert rates == {"fall": (1, 3), "emergency_call": (1, 1), "device_offline": (0, 1)}
    assert {f.type: f.rate for f in report.false_alarms}["fall"] == pytest.approx(1 / 3)
    assert report.resident_cancellations == 1
    assert report.staff_cancellations == 0


def test_device_online_rate(report: SlaReport) -> None:
    per_device = {d.device_id: (d.in_service_s, d.offline_s) for d in report.devices}
    assert per_device == {
        # own episode + hub l1 (closed_at only) + the site outage (every device of s1)
        "d1": (MONTH_S, 7200 + 3600 + 1800),
        "d2": (MONTH_S, 86400 + 3600 + 1800),  # episode from September clipped + hub + site
        "d3": (MONTH_S, 1800 + 14400),  # site outage + open episode to the month end
        "d4": (15 * 86400, 1800),  # from commissioning on 17 October local
    }
    total = 3 * MONTH_S + 15 * 86400
    offline = 12600 + 91800 + 16200 + 1800
    assert report.device_online_rate == pytest.approx((total - offline) / total)


def test_current_month_is_judged_at_report_time(
    populated: tuple[psycopg.Connection[Any], dict[str, int]],
) -> None:
    conn, ids = populated
    # 30 s after the not_up incident was raised: its deadlines are still ahead.
    rep = sla_report(conn, "s1", MONTH, now=utc(31, 15, 59) + timedelta(seconds=30))
    assert rep.within[60].counted == 4
    assert ids["open_not_up"] not in [i.row.id for i in rep.late]
    # 90 s after: it has missed 60 s but not yet 180 s.
    rep = sla_report(conn, "s1", MONTH, now=utc(31, 15, 59) + timedelta(seconds=90))
    assert (rep.within[60].hits, rep.within[60].counted) == (2, 5)
    assert rep.within[180].counted == 4


def test_csv_parses_back(report: SlaReport) -> None:
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == 7
    assert tuple(rows[0].keys()) == INCIDENT_CSV_COLUMNS
    first = rows[0]
    assert (first["type"], first["time_to_acknowledge_s"], first["time_to_on_scene_s"]) == (
        "fall", "30.0", "300.0")  # fmt: skip
    assert first["within_60s"] == "True"
    assert datetime.fromisoformat(first["raised_at"]) == utc(5)
    kpis = {r["kpi"]: r for r in csv.DictReader(io.StringIO(report.kpis_csv()))}
    assert kpis["care_incidents"]["value"] == "6"
    assert float(kpis["answered_within_60s"]["value"]) == pytest.approx(0.4)
    assert kpis["target_answered_60s_en"]["target"] == "0.985"
    assert kpis["target_answered_60s_en"]["met"] == "false"
    assert kpis["time_to_acknowledge_p90_s"]["value"] == "400"


def test_json_round_trip(report: SlaReport) -> None:
    data = json.loads(report.to_json())
    assert data["site_id"] == "s1"
    assert data["month"] == MONTH
    k = data["kpis"]
    assert k["answered_within_180s"] == {"hits": 3, "counted": 5, "share": 0.6}
    assert k["resident_cancellations"] == 1
    assert k["devices_in_service"] == 4
    assert len(data["incidents"]) == 7
    assert len(data["daily_within_60s"]) == 31


def test_png_is_written_headless(report: SlaReport, tmp_path: Path) -> None:
    out = report.to_png(tmp_path / "sla.png")
    blob = out.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(blob) > 10_000


def test_text_table_in_english_on_request(report: SlaReport) -> None:
    text = report.to_text("en")
    assert "site s1" in text
    assert "month 2026-10" in text
    assert "answered within 60 s (operator's contract target)" in text
    assert "answered within 60 s (international reference: TSA code (UK))" in text
    assert "40.0 %" in text
    assert "97.5 %" in text and "95.0 %" in text
    assert "(UTC+8)" in text and "DESIGN" not in text
    assert not re.search(r"[\u4e00-\u9fff]", text)


def test_text_table_is_zh_cn_with_the_sites_own_target(
    populated: tuple[psycopg.Connection[Any], dict[str, int]],
) -> None:
    """The site's contract target (or the Chinese standard it follows) comes first, next to
    the international references; times in the site's zone, named."""
    raw = {"default": {"sla": {"basis": "运营合同目标", "answered_60s": 0.95}},
           "sites": {"s1": {"sla": {"basis": "MZ/T 等同合同条款", "answered_60s": 0.9,
                                    "on_scene_45min": 0.8}}}}  # fmt: skip
    targets = local_targets(raw, "s1")
    rep = sla_report(populated[0], "s1", MONTH, now=AS_OF, local_targets=targets)
    text = rep.to_text()
    lines = text.splitlines()
    assert lines[0] == "月度服务质量报告  站点 s1  2026-10 月  （时区 UTC+8）"
    assert lines[1] == "统计截至 2026-11-03 08:00:00 (UTC+8)"
    row = next(line for line in lines if line.startswith("60 秒内应答（MZ/T 等同合同条款）"))
    assert "40.0 %" in row and "2/5" in row and "90.0 %" in row
    assert row.rstrip().endswith("否")
    assert "45 分钟内到场（MZ/T 等同合同条款）" in text
    assert "60 秒内应答（国际参考：TSA 英国远程照护行业规范）" in text
    assert text.index("MZ/T") < text.index("国际参考")
    assert "照护事件" in text and "设备在线率" in text and "误报" in text
    assert "报警 2026-10-" in text and "DESIGN" not in text and "UK TSA" not in text
    assert [t.target.name for t in rep.targets][:2] == [
        "answered_60s_local",
        "on_scene_45min_local",
    ]
    kpi = rep.kpis()["targets"][0]
    assert kpi["scope"] == "local" and kpi["label"] == "60 秒内应答（MZ/T 等同合同条款）"


def test_site_targets_come_from_the_config_file() -> None:
    assert [(t.name, t.share, t.standard) for t in load_local_targets("demo-hc")] == [
        ("answered_60s_local", 0.9, "居家养老服务合同"),
        ("answered_180s_local", 0.99, "居家养老服务合同"),
    ]
    assert load_local_targets("other")[0].standard == "运营合同目标"
    with pytest.raises(InvalidError, match="share"):
        local_targets({"default": {"sla": {"answered_60s": 95}}}, "s1")
    with pytest.raises(InvalidError, match="unknown"):
        local_targets({"default": {"sla": {"answerd_60s": 0.95}}}, "s1")


def test_unknown_site_and_bad_month(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(SiteNotFoundError):
        sla_report(conn, "nope", MONTH)
    with pytest.raises(ValueError, match="YYYY-MM"):
        sla_report(conn, "s1", "2026-1")


def test_cli_prints_the_table_and_writes_files(
    db: Database,
    populated: tuple[psycopg.Connection[Any], dict[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.cli import main

    for key, value in {
        "SAFEHOME_DATABASE__HOST": "127.0.0.1",
        "SAFEHOME_DATABASE__PORT": str(db.port),
        "SAFEHOME_DATABASE__NAME": db.name,
        "SAFEHOME_DATABASE__USER": db.user,
        "SAFEHOME_DATABASE__PASSWORD": db.password,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SAFEHOME_CONFIG", raising=False)
    csv_path, png_path = tmp_path / "sla.csv", tmp_path / "sla.png"
    argv = ["report", "sla", "--site", "s1", "--month", MONTH,
            "--csv", str(csv_path), "--png", str(png_path)]  # fmt: skip
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "月度服务质量报告  站点 s1  2026-10 月" in out
    assert "照护事件" in out
    assert main(["report", "sla", "--site", "s1", "--month", MONTH, "--lang", "en"]) == 0
    assert "SLA report  site s1  month 2026-10" in capsys.readouterr().out
    assert len(list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))) == 7
    assert (tmp_path / "sla-kpis.csv").exists()
    assert png_path.read_bytes()[:4] == b"\x89PNG"

    assert main(["report", "sla", "--site", "s1", "--month", MONTH, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kpis"]["care_incidents"] == 6
    assert main(["report", "sla", "--site", "nope", "--month", MONTH]) == 2


def test_works_on_a_dict_row_connection(
    populated: tuple[psycopg.Connection[Any], dict[str, int]],
) -> None:
    from psycopg.rows import dict_row

    conn = populated[0]
    conn.row_factory = dict_row
    rep = sla_report(conn, "s1", MONTH, now=AS_OF)
    assert rep.care_count == 6
    with pytest.raises(ValueError, match="timezone-aware"):
        sla_report(conn, "s1", MONTH, now=datetime(2026, 11, 3))
