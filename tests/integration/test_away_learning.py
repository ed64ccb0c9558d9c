"""Days away with the family (随家人外出) are not learned from, end to end on the real
database: an away period in ``away_periods`` is loaded with the analysis registry, and the
runner rebuilt from the stored ``routine_days`` learns the elder's usual rise time from the
days at home only (the away days' rows are rewritten as away days); a neighbour with the
very same days and no away period shows the shift it would otherwise cause."""

from __future__ import annotations

import time

import pytest

from analytics.routine import DaySummary, day_start, local_day
from gateway.analysis import AnalysisRunner, PostgresStore
from gateway.analysis.records import RoutineDay, utc
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings
from gateway.storage import family_away
from gateway.storage.analysis import load_registry, upsert_day_rows
from tests.support import Broker, Database, gateway_settings, make_site

pytestmark = pytest.mark.integration

OFF = 8 * 3600.0
H = 3600.0
AWAY, HOME = "site-a-r0", "site-a-r1"


def test_days_away_with_the_family_do_not_shift_the_learned_rise_time(
    db: Database, broker: Broker
) -> None:
    make_site(db, broker, beds=2, wearables=False, buttons=False)
    now = time.time()
    today = local_day(now, OFF)
    away_days = range(today - 9, today - 1)  # eight days with the family, back yesterday
    rows: list[RoutineDay] = []
    for subject in (AWAY, HOME):
        for d in range(today - 16, today):
            rise = 10 * H if d in away_days else 7 * H + (d % 5) * 60  # 07:00-07:04 at home
            rows.append(RoutineDay(subject, DaySummary(day=d, rise_s=rise, bed_s=21.5 * H)))
    start, end = day_start(away_days[0], OFF), day_start(away_days[-1] + 1, OFF)
    with db.connect() as conn:
        upsert_day_rows(conn, rows, [])
        family_away.create(conn, AWAY, starts_at=utc(start), ends_at=utc(end), note=None,
                           by="family-user")  # fmt: skip
        cancelled = family_away.create(conn, HOME, starts_at=utc(start), ends_at=utc(end),
                                       note=None, by="family-user")  # fmt: skip
        family_away.end_early(conn, cancelled, utc(start - H))  # called off: never in force
        registry = load_registry(conn)
    assert registry.residents[AWAY].away_periods == ((start, end),)
    assert registry.residents[HOME].away_periods == ()
    assert registry.residents[AWAY].status == "home"  # not staff-set away: alerts go on

    store = PostgresStore(gateway_settings(db, broker).database)
    runner = AnalysisRunner(AnalysisSettings(), store, clock=VirtualClock(now))
    try:
        runner.rebuild()  # learns from the stored days; writes the rewritten rows
        away = runner._residents[AWAY].routine.routine
        home = runner._residents[HOME].routine.routine
    finally:
        store.close()

    assert away.rise_learned and away.n_days == 8  # 7 days before the period, and yesterday
    assert 7 * H <= away.rise_median_s <= 7 * H + 300  # not shifted
    assert away.rise_late_s <= 7 * H + 300  # nor the "usually up by" of the NOT_UP deadline
    assert home.rise_median_s >= 9 * H  # the same days, learned with no period: shifted
    stored = db.rows(
        "SELECT day FROM routine_days WHERE subject = %s AND away ORDER BY day", (AWAY,)
    )
    assert [r[0] for r in stored] == list(away_days)
    assert db.rows("SELECT 1 FROM routine_days WHERE subject = %s AND away", (HOME,)) == []
