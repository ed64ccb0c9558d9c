"""Pure rules of visiting care and supervision: the config file, visit plans (strictest
interval wins, district overrides), assessment due dates and the staffing-ratio check."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from gateway.errors import InvalidError
from gateway.supervision.staffing import check_shifts, on_duty, required_staff, shift_window
from gateway.visits.config import Plan, Shift, load_visits_config, parse_visits_config
from gateway.visits.plans import assessment_overdue, due_visits, intervals

RATIOS = {"fully": 3, "partly": 6, "independent": 15}


def test_the_shipped_config_has_the_standard_levels_and_ratios() -> None:
    cfg = load_visits_config()
    assert cfg.levels == ("能力完好", "轻度失能", "中度失能", "重度失能", "完全失能")
    assert cfg.ratios == RATIOS
    assert [cfg.group_of(lv) for lv in cfg.levels] == [
        "independent", "partly", "partly", "fully", "fully"]  # fmt: skip
    assert cfg.group_of(None) == "partly"
    assert cfg.plans_for(None)["high_risk"] == Plan(7, 30)  # weekly phone, monthly home
    assert cfg.plans_for("d-east")["high_risk"] == Plan(3, 7)  # the district's override
    assert cfg.plans_for("d-east")["living_alone"] == Plan(7, 30)  # the rest: defaults


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"assessment": {"levels": []}}, "assessment.levels"),
        ({"staffing": {"fully": 0, "partly": 6, "independent": 15}}, "staffing.fully"),
        ({"plans": {"default": {"lonely": {"phone_days": 7, "home_days": 30}}}}, "lonely"),
        ({"plans": {"default": {"high_risk": {"phone_days": -1, "home_days": 30}}}}, "phone_days"),
    ],
)
def test_a_bad_config_names_the_key(patch: dict[str, Any], where: str) -> None:
    base: dict[str, Any] = {
        "assessment": {"levels": ["A", "B"], "interval_days": 365},
        "staffing": {"fully": 3, "partly": 6, "independent": 15, "shifts": []},
        "door_knock": {"deadline_minutes": 60},
        "plans": {"default": {}},
    }
    parse_visits_config(base)  # the base itself is fine
    with pytest.raises(InvalidError, match=where):
        parse_visits_config(base | patch)


def test_the_strictest_plan_wins_and_zero_means_none() -> None:
    plans = {"high_risk": Plan(7, 30), "very_old": Plan(14, 0), "empty_nest": Plan(0, 20)}
    assert intervals(["very_old"], plans) == {"phone": 14}
    assert intervals(["high_risk", "very_old", "empty_nest"], plans) == {"phone": 7, "home": 20}
    assert intervals(["unknown"], plans) == {}


def test_due_dates_follow_the_last_visit_or_the_start() -> None:
    plans = {"high_risk": Plan(7, 30)}
    today = date(2026, 12, 10)
    last = {"phone": datetime(2026, 12, 1, 9, tzinfo=UTC), "home": None}
    due = due_visits("r1", ["high_risk"], plans, last=last, since=date(2026, 12, 9),
                     today=today, local_date=lambda t: t.date())  # fmt: skip
    assert [(d.kind, d.due_on, d.overdue) for d in due] == [
        ("phone", date(2026, 12, 8), True),  # 1 Dec + 7 days, passed
        ("home", date(2026, 12, 9), True),  # never visited: due since the plan began
    ]
    last = {"phone": datetime(2026, 12, 9, tzinfo=UTC), "home": datetime(2026, 12, 9, tzinfo=UTC)}
    due = due_visits("r1", ["high_risk"], plans, last=last, since=date(2026, 1, 1),
                     today=today, local_date=lambda t: t.date())  # fmt: skip
    assert [(d.due_on, d.overdue) for d in due] == [
        (date(2026, 12, 16), False), (date(2027, 1, 8), False)]  # fmt: skip


def test_assessment_overdue() -> None:
    assert assessment_overdue(None, date(2026, 1, 1))  # never assessed
    assert assessment_overdue(date(2025, 12, 31), date(2026, 1, 1))
    assert not assessment_overdue(date(2026, 1, 1), date(2026, 1, 1))


@pytest.mark.parametrize(
    ("residents", "need"),
    [
        ({"fully": 3}, 1),
        ({"fully": 4}, 2),
        ({"fully": 1, "independent": 1}, 1),  # 1/3 + 1/15 share one carer
        ({"fully": 6, "partly": 12, "independent": 30}, 6),
        ({}, 0),
    ],
)
def test_required_staff(residents: dict[str, int], need: int) -> None:
    assert required_staff(residents, RATIOS) == need


def test_shift_windows_are_local_and_staff_must_cover_half() -> None:
    night = Shift("night", "夜班", 0, 8)
    start, end = shift_window(date(2026, 12, 5), night, 28800)
    assert (start, end) == (
        datetime(2026, 12, 4, 16, tzinfo=UTC),
        datetime(2026, 12, 5, 0, tzinfo=UTC),
    )
    h = timedelta(hours=1)
    rota = [("a", start, end), ("b", start, start + 3 * h), ("c", start + 4 * h, end + 4 * h),
            ("d", start - 9 * h, start)]  # fmt: skip
    assert on_duty(rota, start, end) == 2  # a (all of it) and c (half); b too little, d before


def test_check_shifts_flags_the_short_night() -> None:
    day, night = Shift("day", "白班", 8, 12), Shift("night", "夜班", 20, 12)
    d = date(2026, 12, 5)
    s, e = shift_window(d, day, 28800)
    checks = check_shifts("site-a", {"fully": 4, "partly": 0, "independent": 0},
                          [("a", s, e), ("b", s, e)], shifts=[night, day], ratios=RATIOS,
                          days=[d], utc_offset_s=28800)  # fmt: skip
    assert [(c.shift, c.required, c.on_duty, c.shortfall, c.compliant) for c in checks] == [
        ("day", 2, 2, 0, True), ("night", 2, 0, 2, False)]  # fmt: skip
