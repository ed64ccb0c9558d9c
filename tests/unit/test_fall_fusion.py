"""Fall fusion: confirmation window, cancel, SOS, bed context, merging."""

from __future__ import annotations

from typing import Any

import pytest

from analytics.fall_fusion import FallFusion, FallOutcome, FallSource, FusionParams
from analytics.falls import FallCandidate
from analytics.types import DetectionKind

T = 1_700_000_000.0  # 22:13:20 UTC


def candidate(time: float, peak_g: float = 4.2, impact_mps: float = 2.5) -> FallCandidate:
    return FallCandidate(
        time=time,
        peak_g=peak_g,
        impact_mps=impact_mps,
        free_fall_s=0.0,
        posture_change_deg=84.0,
        stillness=0.02,
        lying=True,
        reason="test",
    )


def fusion(**params: Any) -> FallFusion:
    return FallFusion("resident-7", FusionParams(**params))


# -- confirmation window -------------------------------------------------------------------


def test_candidate_becomes_a_fall_when_the_window_expires() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    assert f.poll(T + 29.9) == []
    assert [e.outcome for e in f.pending] == [FallOutcome.PENDING]
    [fall] = f.poll(T + 30.0)
    assert fall.kind is DetectionKind.FALL
    assert fall.subject == "resident-7"
    assert fall.time == T + 30.0
    assert fall.started == T
    assert fall.reason == (
        "Fall at 22:13:20: impact 4.2 g absorbing 2.5 m/s, posture turned 84°, residual motion "
        "0.02 g afterwards; reported by the wearable's accelerometer analysis; not cancelled "
        "within 30 s."
    )
    assert fall.details["sources"] == "accelerometer"
    assert fall.details["peak_g"] == 4.2
    assert fall.details["posture_change_deg"] == 84.0
    assert fall.details["device_flag"] is False
    assert f.pending == ()
    assert [e.outcome for e in f.history] == [FallOutcome.CONFIRMED]
    assert f.poll(T + 100.0) == []  # reported once


def test_detection_time_does_not_depend_on_poll_time() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    [fall] = f.poll(T + 500.0)
    assert fall.time == T + 30.0


def test_confirm_window_is_a_parameter() -> None:
    f = fusion(confirm_window_s=60.0)
    f.add_candidate(candidate(T))
    assert f.poll(T + 59.0) == []
    [fall] = f.poll(T + 60.0)
    assert "not cancelled within 60 s" in fall.reason


def test_explanation_uses_local_time() -> None:
    f = fusion(utc_offset_s=8 * 3600.0)
    f.add_candidate(candidate(T))
    [fall] = f.poll(T + 30.0)
    assert fall.reason.startswith("Fall at 06:13:20:")


# -- cancel --------------------------------------------------------------------------------


def test_cancel_within_the_window_yields_no_alert_but_a_record() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    [record] = f.cancel(T + 12.0)
    assert record.outcome is FallOutcome.CANCELLED
    assert record.closed_at == T + 12.0
    assert record.note == 'cancelled by the resident ("I\'m OK") at 22:13:32'
    assert record.candidate is not None and record.candidate.peak_g == 4.2
    assert f.poll(T + 100.0) == []
    assert f.cancelled == (record,)


def test_cancel_before_the_detector_reports_the_impact_still_counts() -> None:
    """The accelerometer candidate arrives 2.5 s after the impact; the resident was faster."""
    f = fusion()
    assert f.cancel(T + 1.0) == []
    f.add_candidate(candidate(T))
    assert f.poll(T + 100.0) == []
    assert [e.outcome for e in f.cancelled] == [FallOutcome.CANCELLED]


def test_cancel_before_the_impact_does_not_cancel_it() -> None:
    f = fusion()
    f.cancel(T - 5.0)
    f.add_candidate(candidate(T))
    assert len(f.poll(T + 30.0)) == 1


def test_cancel_timed_before_an_open_episode_does_not_cancel_it() -> None:
    """A cancel delivered late, pressed before this impact, concerns something earlier."""
    f = fusion()
    f.add_candidate(candidate(T))
    assert f.cancel(T - 5.0) == []
    assert len(f.poll(T + 30.0)) == 1


def test_cancel_after_the_window_is_too_late() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    assert f.cancel(T + 31.0) == []
    assert len(f.poll(T + 31.0)) == 1
    assert f.cancelled == ()


# -- merging -------------------------------------------------------------------------------


def test_evidence_close_together_is_one_fall_with_all_sources() -> None:
    f = fusion()
    f.add_candidate(candidate(T, peak_g=3.0, impact_mps=1.5))
    f.device_fall_flag(T + 4.0)
    f.add_candidate(candidate(T + 6.0, peak_g=6.1, impact_mps=3.4))  # second impact
    assert len(f.pending) == 1
    [fall] = f.poll(T + 60.0)
    assert fall.time == T + 30.0
    assert fall.details["sources"] == "accelerometer+device_flag"
    assert fall.details["device_flag"] is True
    assert fall.details["peak_g"] == 6.1  # strongest evidence
    assert "reported by the wearable's accelerometer analysis and the wearable's own fall flag" in (
        fall.reason
    )


def test_earlier_evidence_moves_the_window_start() -> None:
    """Evidence timed before the episode's start (reported late) moves the window earlier."""
    f = fusion()
    f.add_candidate(candidate(T + 3.0))
    f.device_fall_flag(T)
    [fall] = f.poll(T + 30.0)
    assert fall.started == T
    assert fall.time == T + 30.0


def test_evidence_further_apart_opens_separate_falls() -> None:
    f = fusion(merge_window_s=10.0)
    f.add_candidate(candidate(T))
    f.add_candidate(candidate(T + 20.0))
    falls = f.poll(T + 100.0)
    assert [d.time for d in falls] == [T + 30.0, T + 50.0]


def test_late_evidence_of_a_confirmed_fall_does_not_alert_again() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    assert len(f.poll(T + 30.0)) == 1
    f.device_fall_flag(T + 5.0)  # delivered late
    assert f.poll(T + 40.0) == []
    [record] = f.history
    assert record.sources == (FallSource.ACCELEROMETER, FallSource.DEVICE_FLAG)


# -- SOS -----------------------------------------------------------------------------------


def test_sos_is_an_immediate_emergency_call() -> None:
    f = fusion()
    [call] = f.sos(T)
    assert call.kind is DetectionKind.EMERGENCY_CALL
    assert call.time == T
    assert call.subject == "resident-7"
    assert call.reason == "SOS button pressed at 22:13:20"
    assert f.poll(T + 100.0) == []


def test_sos_during_the_window_confirms_the_fall_at_once() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    [call] = f.sos(T + 8.0)
    assert call.reason == "SOS button pressed at 22:13:28, 8 s after a suspected fall"
    assert call.details["fall_started"] == T
    [fall] = f.poll(T + 8.0)
    assert fall.time == T + 8.0
    assert fall.details["sources"] == "accelerometer+sos"
    assert fall.reason.endswith("the resident pressed SOS at 22:13:28.")
    assert f.cancel(T + 9.0) == []  # an SOS-confirmed fall cannot be cancelled


def test_sos_before_the_detector_reports_the_impact() -> None:
    f = fusion()
    f.sos(T + 1.0)
    f.add_candidate(candidate(T))  # arrives after the SOS, impact before it
    [fall] = f.poll(T + 3.0)
    assert fall.time == T + 1.0
    assert fall.details["sos"] is True


def test_sos_is_never_suppressed_by_bed_context() -> None:
    f = fusion()
    f.bed_presence(T - 60.0, in_bed=True)
    f.add_candidate(candidate(T))
    assert len(f.sos(T + 5.0)) == 1
    [fall] = f.poll(T + 5.0)
    assert fall.kind is DetectionKind.FALL


# -- bed context ---------------------------------------------------------------------------


def test_accelerometer_only_impact_in_bed_is_suppressed_with_a_record() -> None:
    f = fusion()
    f.bed_presence(T - 60.0, in_bed=True)
    f.add_candidate(candidate(T))
    assert f.poll(T + 30.0) == []
    [record] = f.history
    assert record.outcome is FallOutcome.SUPPRESSED_IN_BED
    assert record.note == (
        "suppressed: accelerometer-only impact at 22:13:20 while the bed sensor reported the "
        "resident in bed (report at 22:12:20) and still in bed when the window expired"
    )


def test_leaving_the_bed_during_the_window_is_a_fall_out_of_bed() -> None:
    f = fusion()
    f.bed_presence(T - 60.0, in_bed=True)
    f.add_candidate(candidate(T))
    f.bed_presence(T + 4.0, in_bed=False)
    assert len(f.poll(T + 30.0)) == 1


@pytest.mark.parametrize(
    ("report_age_s", "in_bed", "suppressed"),
    [(60.0, True, True), (119.0, True, True), (121.0, True, False), (60.0, False, False)],
)
def test_bed_context_needs_a_recent_in_bed_report(
    report_age_s: float, in_bed: bool, suppressed: bool
) -> None:
    f = fusion(bed_report_max_age_s=120.0)
    f.bed_presence(T - report_age_s, in_bed=in_bed)
    f.add_candidate(candidate(T))
    assert len(f.poll(T + 30.0)) == (0 if suppressed else 1)


def test_bed_report_after_the_impact_is_not_context_for_it() -> None:
    f = fusion()
    f.add_candidate(candidate(T))
    f.bed_presence(T + 10.0, in_bed=True)  # e.g. helped back into bed
    assert len(f.poll(T + 30.0)) == 1


def test_device_flag_is_not_suppressed_in_bed() -> None:
    f = fusion()
    f.bed_presence(T - 10.0, in_bed=True)
    f.device_fall_flag(T)
    [fall] = f.poll(T + 30.0)
    assert fall.details["sources"] == "device_flag"
    assert "no accelerometer analysis available" in fall.reason
    assert fall.details["peak_g"] is None


def test_late_device_flag_overrides_a_bed_suppression() -> None:
    """Had the flag arrived in time the episode would not have been suppressed."""
    f = fusion()
    f.bed_presence(T - 10.0, in_bed=True)
    f.add_candidate(candidate(T))
    assert f.poll(T + 30.0) == []
    f.device_fall_flag(T + 2.0)  # delivered late
    assert f.poll(T + 31.0) == []  # its own window, from the flag's time
    [fall] = f.poll(T + 32.0)
    assert fall.details["sources"] == "device_flag"
    assert fall.started == T + 2.0
    late_accelerometer = fusion()
    late_accelerometer.bed_presence(T - 10.0, in_bed=True)
    late_accelerometer.add_candidate(candidate(T))
    late_accelerometer.poll(T + 30.0)
    late_accelerometer.add_candidate(candidate(T + 3.0))  # same source: stays suppressed
    assert late_accelerometer.poll(T + 100.0) == []


def test_agreeing_sources_in_bed_are_not_suppressed() -> None:
    f = fusion()
    f.bed_presence(T - 10.0, in_bed=True)
    f.add_candidate(candidate(T))
    f.device_fall_flag(T + 2.0)
    assert len(f.poll(T + 30.0)) == 1


# -- housekeeping --------------------------------------------------------------------------


def test_history_is_bounded() -> None:
    f = fusion(history_size=2)
    for k in range(4):
        f.add_candidate(candidate(T + 100.0 * k))
        f.poll(T + 100.0 * k + 30.0)
    assert [e.started for e in f.history] == [T + 200.0, T + 300.0]


def test_old_cancels_are_forgotten() -> None:
    f = fusion()
    f.cancel(T)
    f.poll(T + 1_000.0)
    f.add_candidate(candidate(T - 1.0))  # absurdly late evidence: no longer matched
    assert len(f.poll(T + 1_000.0)) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"confirm_window_s": -1.0},
        {"merge_window_s": -1.0},
        {"bed_report_max_age_s": -1.0},
        {"history_size": 0},
    ],
)
def test_rejects_invalid_params(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FusionParams(**params)
