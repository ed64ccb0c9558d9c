"""The SLA chart's answer-time curve for 0, 1 and many incidents (issue 11 §7)."""

from __future__ import annotations

import itertools

from gateway.reports.sla import cdf_points


def test_one_incident_draws_a_visible_step() -> None:
    xs, ys = cdf_points([42.0], 1, 200.0)
    assert xs == [0.0, 42.0, 200.0]
    assert ys == [0.0, 1.0, 1.0]  # flat at 0 until 42 s, then 100 % to the right edge


def test_many_incidents_draw_a_staircase_to_the_counted_share() -> None:
    xs, ys = cdf_points([10.0, 30.0, 30.0, 90.0], 5, 200.0)  # one counted, never answered
    assert xs == [0.0, 10.0, 30.0, 30.0, 90.0, 200.0]
    assert ys == [0.0, 0.2, 0.4, 0.6, 0.8, 0.8]
    assert all(a <= b for a, b in itertools.pairwise(ys))


def test_a_late_answer_beyond_the_axis_keeps_its_point() -> None:
    xs, _ = cdf_points([900.0], 1, 600.0)
    assert xs[-1] == 900.0
