"""SLA report maths on synthetic rows: percentiles, shares, deadlines, month windows, uptime."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.reports.sla import (
    DeviceRow,
    Episode,
    IncidentRow,
    IncidentTimes,
    Share,
    Stats,
    build_report,
    covered_seconds,
    device_availability,
    local_day,
    merge_intervals,
    month_window,
    percentile,
)

CST = 8 * 3600  # UTC+8
T0 = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _row(i: int, raised: datetime = T0, **kw: object) -> IncidentRow:
    base: dict[str, object] = {
        "id": i, "type": "fall", "technical": False, "priority": 1, "subject": "r0",
        "resident_id": "r0", "state": "raised", "raised_at": raised,
    }  # fmt: skip
    base.update(kw)
    return IncidentRow(**base)  # type: ignore[arg-type]


# -- percentile / share ---------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 90) == 7.0
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == 5.0  # lower median: 50 % of values are <= 5
    assert percentile(values, 90) == 9.0
    assert percentile(values, 91) == 10.0
    assert percentile(values, 100) == 10.0
    assert percentile(reversed(values), 10) == 1.0  # order does not matter
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, 0)


def test_percentile_floating_point_ranks_are_exact() -> None:
    # 0.9 * 20 = 18.000000000000004 in floating point: must still be rank 18, not 19.
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 90) == 18.0


def test_share_skips_not_counted() -> None:
    s = Share.of([True, False, None, True, None])
    assert (s.hits, s.counted) == (2, 3)
    assert s.value == pytest.approx(2 / 3)
    assert Share.of([None]).value is None


def test_stats_ignore_missing_values() -> None:
    st = Stats.of([30.0, None, 10.0, 20.0])
    assert (st.count, st.median_s, st.p90_s) == (3, 20.0, 30.0)
    assert Stats.of([]) == Stats(0, None, None)


# -- month windows in UTC+8 -----------------------------------------------------------------


def test_month_window_utc_plus_8() -> None:
    start, end = month_window("2026-11", CST)
    assert start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    start, end = month_window("2026-12", CST)  # year rollover
    assert end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    start, end = month_window("2028-02", 0)  # leap year
    assert (end - start).days == 29


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-11-01"])
def test_month_window_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_window(bad, CST)


def test_incident_month_follows_local_time() -> None:
    # 2026-10-31 16:30 UTC is 2026-11-01 00:30 in UTC+8: November, not October.
    nov_first = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)
    # 2026-11-30 15:59:59 UTC is 23:59:59 local on the 30th: still November.
    nov_last = datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC)
    dec_first = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 00:00 local on 1 December
    oct_last = datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC)
    rows = [_row(1, nov_first), _row(2, nov_last), _row(3, dec_first), _row(4, oct_last)]
    rep = build_report(
        "s1", "2026-11", utc_offset_s=CST, incidents=rows, devices=[], episodes=[],
        as_of=datetime(2026, 12, 5, tzinfo=UTC),
    )  # fmt: skip
    assert [i.row.id for i in rep.incidents] == [1, 2]
    assert local_day(nov_first, CST) == date(2026, 11, 1)
    assert local_day(nov_last, CST) == date(2026, 11, 30)
    assert len(rep.daily) == 30
    assert rep.daily[0].day == date(2026, 11, 1)
    assert rep.daily[0].share.counted == 1  # the 00:30 local incident lands on 1 November


# -- deadlines ------------------------------------------------------------------------------


def test_verdicts_per_threshold() -> None:
    as_of = _at(3600)
    answered_45 = IncidentTimes.of(_row(1, acknowledged_at=_at(45)), as_of)
    assert answered_45.within == {60: True, 180: True}
    assert answered_45.ack_s == 45.0
    answered_60 = IncidentTimes.of(_row(2, acknowledged_at=_at(60)), as_of)
    assert answered_60.within == {60: True, 180: True}  # at the deadline is in time
    answered_61 = IncidentTimes.of(_row(3, acknowledged_at=_at(61)), as_of)
    assert answered_61.within == {60: False, 180: True}
    assert not answered_61.late
    answered_200 = IncidentTimes.of(_row(4, acknowledged_at=_at(200)), as_of)
    assert answered_200.within == {60: False, 180: False}
    assert answered_200.late


def test_open_incident_misses_only_deadlines_already_passed() -> None:
    open_row = _row(1)
    assert IncidentTimes.of(open_row, _at(30)).within == {60: None, 180: None}
    assert IncidentTimes.of(open_row, _at(60)).within == {60: False, 180: None}
    assert IncidentTimes.of(open_row, _at(500)).within == {60: False, 180: False}
    assert IncidentTimes.of(open_row, _at(500)).late


def test_resident_cancel_before_deadline_is_not_counted() -> None:
    row = _row(1, state="cancelled", cancelled_at=_at(20), cancel_source="resident")
    t = IncidentTimes.of(row, _at(3600))
    assert t.within == {60: None, 180: None}
    assert t.answer_s is None
    late_cancel = _row(2, state="cancelled", cancelled_at=_at(90), cancel_source="resident")
    assert IncidentTimes.of(late_cancel, _at(3600)).within == {60: False, 180: None}


def test_staff_cancel_from_raised_is_the_answer() -> None:
    row = _row(1, state="cancelled", cancelled_at=_at(40), cancel_source="staff")
    t = IncidentTimes.of(row, _at(3600))
    assert t.answer_s == 40.0
    assert t.ack_s is None
    assert t.within == {60: True, 180: True}


def test_attendance_verdicts() -> None:
    as_of = _at(86400)
    sent = {"acknowledged_at": _at(30), "dispatched_at": _at(40)}
    quick = _row(1, state="on_scene", on_scene_at=_at(2700), **sent)
    assert IncidentTimes.of(quick, as_of).attended == {2700: True, 3600: True}
    slow = _row(2, state="resolved", on_scene_at=_at(3000), resolved_at=_at(4000),
                outcome="assisted", **sent)  # fmt: skip
    assert IncidentTimes.of(slow, as_of).attended == {2700: False, 3600: True}
    waiting = _row(3, state="dispatched", **sent)
    assert IncidentTimes.of(waiting, _at(3000)).attended == {2700: False, 3600: None}
    called_back = _row(4, state="resolved", resolved_at=_at(600), outcome="no_action_needed",
                       **sent)  # fmt: skip
    assert IncidentTimes.of(called_back, as_of).attended == {2700: None, 3600: None}
    never_sent = _row(5, acknowledged_at=_at(30), state="acknowledged")
    assert IncidentTimes.of(never_sent, as_of).attended == {2700: None, 3600: None}
    rep = build_report(
        "s1", "2026-11", utc_offset_s=CST, incidents=[quick, slow, waiting, called_back],
        devices=[], episodes=[], as_of=as_of,
    )  # fmt: skip
    assert (rep.attendance[2700].hits, rep.attendance[2700].counted) == (1, 3)
    assert (rep.attendance[3600].hits, rep.attendance[3600].counted) == (2, 3)
    assert [t.met for t in rep.targets][3:] == [False, False]


# -- device time ----------------------------------------------------------------------------


def test_merge_and_cover() -> None:
    a = [(_at(0), _at(10)), (_at(5), _at(20)), (_at(30), _at(40)), (_at(50), _at(50))]
    assert merge_intervals(a) == [(_at(0), _at(20)), (_at(30), _at(40))]
    assert covered_seconds(a, (_at(15), _at(35))) == 10.0
    assert covered_seconds([], (_at(0), _at(10))) == 0.0


def test_device_availability_unions_device_hub_and_site_episodes() -> None:
    window = (_at(0), _at(1000))
    dev = DeviceRow("d1", "loc1", commissioned_at=_at(-5000))
    episodes = [
        Episode("device_offline", "d1", _at(100), _at(200)),
        Episode("hub_offline", "loc1", _at(150), _at(300)),  # overlaps: union 100..300
        Episode("site_offline", "s1", _at(900), None),  # open: to the window end
        Episode("device_offline", "d2", _at(0), _at(1000)),  # another device
        Episode("hub_offline", "loc2", _at(0), _at(1000)),  # another location
        Episode("site_offline", "s2", _at(0), _at(1000)),  # another site
    ]
    av = device_availability(dev, "s1", episodes, window)
    assert av.in_service_s == 1000.0
    assert av.offline_s == 300.0
    assert av.online_rate == pytest.approx(0.7)


def test_device_commissioned_or_decommissioned_mid_window() -> None:
    window = (_at(0), _at(1000))
    episodes = [Episode("device_offline", "d1", _at(-100), _at(500))]
    late = DeviceRow("d1", None, commissioned_at=_at(400))
    av = device_availability(late, "s1", episodes, window)
    assert (av.in_service_s, av.offline_s) == (600.0, 100.0)
    gone = DeviceRow("d1", None, commissioned_at=_at(-10), decommissioned_at=_at(250), active=False)
    av = device_availability(gone, "s1", episodes, window)
    assert (av.in_service_s, av.offline_s) == (250.0, 250.0)
    idle = DeviceRow("d1", None, commissioned_at=_at(-10), active=False)
    assert device_availability(idle, "s1", episodes, window).online_rate is None


# -- the whole report on synthetic rows -----------------------------------------------------


def test_build_report_kpis() -> None:
    rows = [
        _row(1, acknowledged_at=_at(30), on_scene_at=_at(300), resolved_at=_at(900),
             state="resolved", outcome="assisted"),
        _row(2, acknowledged_at=_at(90), resolved_at=_at(600), state="resolved",
             outcome="false_alarm"),
        _row(3, type="emergency_call", state="cancelled", cancelled_at=_at(10),
             cancel_source="resident"),
        _row(4, type="emergency_call"),  # never answered
        _row(5, type="device_offline", technical=True, subject="d1", resident_id=None,
             state="resolved", resolved_at=_at(50), outcome="condition_cleared"),
    ]  # fmt: skip
    dev = DeviceRow("d1", "loc1", commissioned_at=datetime(2026, 1, 1, tzinfo=UTC))
    start, end = month_window("2026-11", CST)
    ep = Episode("device_offline", "d1", start, start + timedelta(days=3))
    rep = build_report(
        "s1", "2026-11", utc_offset_s=CST, incidents=rows, devices=[dev], episodes=[ep],
        as_of=end + timedelta(days=1),
    )  # fmt: skip
    assert (rep.care_count, rep.technical_count) == (4, 1)
    assert (rep.within[60].hits, rep.within[60].counted) == (1, 3)
    assert (rep.within[180].hits, rep.within[180].counted) == (2, 3)
    assert [t.met for t in rep.targets] == [False, False, False, None, None]
    assert rep.acknowledge == Stats(2, 30.0, 90.0)
    assert rep.on_scene == Stats(1, 300.0, 300.0)
    assert rep.resolve == Stats(2, 600.0, 900.0)
    assert [i.row.id for i in rep.late] == [4]
    rates = {f.type: (f.false_alarms, f.resolved, f.rate) for f in rep.false_alarms}
    assert rates == {"fall": (1, 2, 0.5), "device_offline": (0, 1, 0.0)}
    assert rep.resident_cancellations == 1
    assert rep.device_online_rate == pytest.approx(27 / 30)
    kpis = rep.kpis()
    assert kpis["late_incidents"] == [4]
    assert kpis["answered_within_60s"] == {"hits": 1, "counted": 3, "share": pytest.approx(1 / 3)}


def test_targets_met_and_no_data() -> None:
    rows = [_row(i, _at(i * 3600), acknowledged_at=_at(i * 3600 + 20)) for i in range(1, 41)]
    rep = build_report(
        "s1", "2026-11", utc_offset_s=CST, incidents=rows, devices=[], episodes=[],
        as_of=_at(10**6),
    )  # fmt: skip
    assert [t.met for t in rep.targets] == [True, True, True, None, None]
    assert rep.device_online_rate is None
    empty = build_report(
        "s1", "2026-11", utc_offset_s=CST, incidents=[], devices=[], episodes=[], as_of=_at(0)
    )
    assert [t.met for t in empty.targets] == [None] * 5
    assert "照护事件" in empty.to_text()  # zh-CN by default
    assert "care incidents" in empty.to_text("en")
