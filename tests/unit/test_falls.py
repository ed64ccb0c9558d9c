"""Fall detector on synthetic accelerometer traces (50 Hz, g, gravity included).

A trace is built from the direction of "up" in the device frame (what a static
accelerometer reads, 1 g), plus movement and impact pulses, plus sensor noise. The
device frame here has y up when standing and z out of the belly; the rotation tests
show that nothing depends on that choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from analytics.falls import FallCandidate, FallDetector, FallParams, detect_falls

FS = 50.0
Vector = npt.NDArray[np.float64]
Signal = npt.NDArray[np.float64]

UP = np.array([0.0, 1.0, 0.0])  # standing upright
FORWARD = np.array([0.0, 0.0, 1.0])  # out of the belly
RIGHT = np.array([1.0, 0.0, 0.0])
SUPINE = FORWARD  # lying on the back: the belly faces up
PRONE = -FORWARD  # lying face down


def tilted(degrees: float, toward: Vector = FORWARD) -> Vector:
    """The up direction of a trunk tilted by ``degrees`` (toward = +z leans backward)."""
    r = np.radians(degrees)
    return np.asarray(np.cos(r) * UP + np.sin(r) * toward, dtype=np.float64)


SITTING = tilted(15.0)  # slightly reclined in a chair


class Trace:
    """Builds a trace segment by segment; pulses are added at segment boundaries."""

    def __init__(self) -> None:
        self._parts: list[Signal] = []
        self._pulses: list[tuple[int, float, float, Vector]] = []

    @property
    def length(self) -> int:
        return sum(len(p) for p in self._parts)

    def hold(self, seconds: float, up: Vector) -> Trace:
        self._parts.append(np.tile(up, (round(seconds * FS), 1)))
        return self

    def walk(self, seconds: float, up: Vector = UP, side: Vector = RIGHT) -> Trace:
        t = np.arange(round(seconds * FS)) / FS
        bounce = 1.0 + 0.3 * np.sin(2 * np.pi * 2.0 * t)  # two steps per second
        sway = 0.15 * np.sin(2 * np.pi * 1.0 * t)
        self._parts.append(bounce[:, None] * up + sway[:, None] * side)
        return self

    def turn(self, seconds: float, start: Vector, end: Vector, gravity: float = 1.0) -> Trace:
        """Rotate from one posture to another; ``gravity`` < 1 models a falling body."""
        n = round(seconds * FS)
        w = np.linspace(0.0, 1.0, n)[:, None]
        path = (1 - w) * start + w * end
        self._parts.append(gravity * path / np.linalg.norm(path, axis=1, keepdims=True))
        return self

    def free_fall(self, seconds: float) -> Trace:
        self._parts.append(np.full((round(seconds * FS), 3), 0.01))
        return self

    def impact(self, peak_g: float, width_s: float, direction: Vector) -> Trace:
        """A Gaussian pulse of ``peak_g`` (on top of gravity) at the current position."""
        self._pulses.append((self.length, peak_g, width_s, direction))
        return self

    def build(self, noise_g: float = 0.01, seed: int = 0) -> Signal:
        signal = np.concatenate(self._parts)
        i = np.arange(len(signal))
        for at, peak, width, direction in self._pulses:
            shape = peak * np.exp(-0.5 * ((i - at) / (width * FS)) ** 2)
            signal = signal + shape[:, None] * direction
        rng = np.random.default_rng(seed)
        return signal + rng.normal(0.0, noise_g, signal.shape)


# -- scenarios ---------------------------------------------------------------------------


def fall_while_walking(seed: int = 0) -> Signal:
    """Walk, trip, fall backwards onto the floor (impact 5 g), lie still."""
    return (
        Trace()
        .walk(6.0)
        .turn(0.6, UP, SUPINE, gravity=0.5)
        .impact(4.0, 0.04, SUPINE)
        .hold(8.0, SUPINE)
        .build(seed=seed)
    )


def fall_with_bounce(seed: int = 8) -> Signal:
    """Walk, fall sideways (5 g), bounce 0.6 s later (3 g), lie still on the side."""
    return (
        Trace()
        .walk(6.0)
        .turn(0.6, UP, RIGHT, gravity=0.5)
        .impact(4.0, 0.04, RIGHT)
        .hold(0.6, RIGHT)
        .impact(2.0, 0.05, RIGHT)
        .hold(8.0, RIGHT)
        .build(seed=seed)
    )


def fall_from_chair(seed: int = 1, impact_g: float = 1.5) -> Signal:
    """Sitting, faints, slumps forward out of the chair; soft impact (2.5 g), lies still."""
    return (
        Trace()
        .hold(6.0, SITTING)
        .turn(1.0, SITTING, PRONE, gravity=0.8)
        .impact(impact_g, 0.05, PRONE)
        .hold(8.0, PRONE)
        .build(seed=seed)
    )


def sitting_down_hard(seed: int = 2) -> Signal:
    """Standing, drops heavily onto a chair (impact 3.5 g), sits."""
    return (
        Trace()
        .hold(6.0, UP)
        .turn(0.8, UP, SITTING, gravity=0.7)
        .impact(2.5, 0.04, SITTING)
        .hold(6.0, SITTING)
        .build(seed=seed)
    )


def lying_down_on_bed(seed: int = 3, impact_g: float = 0.9) -> Signal:
    """Sitting on the bed, lies back quickly onto the mattress (1.9 g, soft), lies still."""
    return (
        Trace()
        .hold(6.0, SITTING)
        .turn(1.0, SITTING, SUPINE, gravity=0.9)
        .impact(impact_g, 0.05, SUPINE)
        .hold(6.0, SUPINE)
        .build(seed=seed)
    )


def walking(seconds: float = 60.0, seed: int = 4) -> Signal:
    return Trace().walk(seconds).build(seed=seed)


def jump(seed: int = 5) -> Signal:
    """Standing, jumps (0.3 s airborne), lands hard (5 g), stands."""
    return Trace().hold(4.0, UP).free_fall(0.3).impact(4.0, 0.03, UP).hold(5.0, UP).build(seed=seed)


def stumble_with_recovery(seed: int = 6) -> Signal:
    """Walking, stumbles forward (trunk 35°, stamp 3.5 g), recovers and walks on."""
    return (
        Trace()
        .walk(6.0)
        .turn(0.3, UP, tilted(35.0, PRONE), gravity=0.9)
        .impact(2.5, 0.04, UP)
        .turn(0.5, tilted(35.0, PRONE), UP)
        .walk(6.0)
        .build(seed=seed)
    )


def device_dropped(seed: int = 7, drop_s: float = 0.45) -> Signal:
    """Pendant slips off while standing, falls freely to the floor (9 g), lies there."""
    return (
        Trace()
        .hold(6.0, UP)
        .free_fall(drop_s)
        .impact(8.0, 0.015, RIGHT)
        .hold(8.0, RIGHT)
        .build(noise_g=0.003, seed=seed)
    )


FALLS: dict[str, tuple[Callable[[], Signal], float]] = {
    "fall_while_walking": (fall_while_walking, 6.6),
    "fall_with_bounce": (fall_with_bounce, 6.6),
    "fall_from_chair": (fall_from_chair, 7.0),
}
NON_FALLS: dict[str, Callable[[], Signal]] = {
    "sitting_down_hard": sitting_down_hard,
    "lying_down_on_bed": lying_down_on_bed,
    "walking": walking,
    "jump": jump,
    "stumble_with_recovery": stumble_with_recovery,
    "device_dropped": device_dropped,
}


def random_rotation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A uniformly random proper rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def stream(signal: Signal, batch: int, t0: float = 0.0) -> list[FallCandidate]:
    detector = FallDetector()
    found: list[FallCandidate] = []
    for first in range(0, len(signal), batch):
        found += detector.update(t0 + first / FS, signal[first : first + batch])
    return found


# -- detection ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FALLS))
def test_falls_are_detected_with_their_evidence(name: str) -> None:
    make, impact_s = FALLS[name]
    found = detect_falls(make(), fs=FS, t0=1_000.0)
    assert len(found) == 1
    fall = found[0]
    assert fall.time == pytest.approx(1_000.0 + impact_s, abs=1.5 / FS)
    assert fall.posture_change_deg > 75.0
    assert fall.stillness < 0.05
    assert fall.impact_mps > 1.2
    assert fall.free_fall_s < 0.1
    assert fall.lying


def test_fall_candidate_values_and_reason() -> None:
    fall = detect_falls(fall_while_walking(), fs=FS)[0]
    assert fall.peak_g == pytest.approx(5.0, abs=0.15)  # 1 g gravity + 4 g pulse
    assert fall.posture_change_deg == pytest.approx(90.0, abs=5.0)
    assert 3.0 < fall.impact_mps < 4.0  # area of the pulse above 1.2 g, times g
    assert fall.reason.startswith("impact 5.0 g at 00:00:06 absorbing 3.")
    assert "posture turned 9" in fall.reason
    assert "still afterwards" in fall.reason


def test_reason_uses_local_time() -> None:
    params = FallParams(utc_offset_s=2 * 3600.0)
    fall = detect_falls(fall_while_walking(), t0=0.0, params=params)[0]
    assert "at 02:00:06" in fall.reason
    assert fall.time == pytest.approx(6.6, abs=1.5 / FS)  # time itself stays UTC epoch


@pytest.mark.parametrize("name", sorted(NON_FALLS))
def test_daily_activities_are_not_falls(name: str) -> None:
    assert detect_falls(NON_FALLS[name](), fs=FS) == []


def test_soft_fall_depends_on_impact_impulse() -> None:
    """The same slump from a chair: detected with a floor impact, not when cushioned."""
    assert len(detect_falls(fall_from_chair(impact_g=1.5))) == 1
    assert detect_falls(fall_from_chair(impact_g=0.7)) == []


def test_lying_down_too_hard_is_a_fall() -> None:
    """What separates lying down from falling over backwards is the impact impulse."""
    assert detect_falls(lying_down_on_bed(impact_g=0.9)) == []
    assert len(detect_falls(lying_down_on_bed(impact_g=3.0))) == 1


def test_dropped_device_is_vetoed_by_long_free_fall() -> None:
    assert detect_falls(device_dropped(drop_s=0.45)) == []
    # Same impact and posture with a body-like short free fall: reported.
    found = detect_falls(device_dropped(drop_s=0.15))
    assert len(found) == 1
    assert found[0].free_fall_s == pytest.approx(0.16, abs=0.03)


def test_walking_on_after_the_impact_is_not_a_fall() -> None:
    """Impact and a posture change, but vigorous movement afterwards: not lying still."""
    trace = (
        Trace()
        .walk(6.0)
        .turn(0.5, UP, SUPINE, gravity=0.5)
        .impact(4.0, 0.04, SUPINE)
        .walk(8.0, up=SUPINE, side=RIGHT)
        .build()
    )
    # Crawling or rolling on the floor: bouncing 0.3 g as in walking, but stronger.
    trace[330:] += np.sin(np.arange(len(trace) - 330) / FS * 2 * np.pi * 2.5)[:, None] * UP
    assert detect_falls(trace) == []


@pytest.mark.parametrize(("upright_s", "reported"), [(0.8, False), (1.2, True)])
def test_fall_at_stream_start_needs_a_prior_posture(upright_s: float, reported: bool) -> None:
    """The pre-fall posture is averaged over 0.5 s ending 1 s before the impact: a stream
    starting less than 1.5 s before the impact has no reference posture."""
    trace = (
        Trace()
        .hold(upright_s, UP)
        .turn(0.4, UP, SUPINE, gravity=0.5)
        .impact(4.0, 0.04, SUPINE)
        .hold(5.0, SUPINE)
        .build()
    )
    assert len(detect_falls(trace)) == int(reported)


def test_impacts_within_refractory_period_give_one_candidate() -> None:
    """A tumbling fall: onto the side, then rolling onto the back with a second impact.
    Each impact passes every test on its own; the second belongs to the same fall."""
    trace = (
        Trace()
        .walk(6.0)
        .turn(0.6, UP, RIGHT, gravity=0.5)
        .impact(4.0, 0.04, RIGHT)
        .hold(2.5, RIGHT)
        .turn(0.4, RIGHT, SUPINE, gravity=0.8)
        .impact(4.0, 0.04, SUPINE)
        .hold(8.0, SUPINE)
        .build()
    )
    assert [round(c.time, 1) for c in detect_falls(trace)] == [6.6]
    separate = detect_falls(trace, params=FallParams(refractory_s=1.0))
    assert [round(c.time, 1) for c in separate] == [6.6, 9.5]
    two_falls = np.concatenate((fall_while_walking(seed=1), fall_while_walking(seed=2)))
    assert [round(c.time, 1) for c in detect_falls(two_falls)] == [6.6, 21.2]


# -- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_results_do_not_depend_on_device_orientation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scenarios: dict[str, Callable[[], Signal]] = {k: v[0] for k, v in FALLS.items()}
    scenarios.update(NON_FALLS)
    for name, make in scenarios.items():
        signal = make()
        rotated = signal @ random_rotation(rng).T
        plain = detect_falls(signal)
        turned = detect_falls(rotated)
        assert len(plain) == len(turned), name
        for a, b in zip(plain, turned, strict=True):
            assert b.time == a.time
            assert b.peak_g == pytest.approx(a.peak_g, rel=1e-9)
            assert b.impact_mps == pytest.approx(a.impact_mps, rel=1e-9)
            assert b.posture_change_deg == pytest.approx(a.posture_change_deg, abs=1e-6)
            assert b.stillness == pytest.approx(a.stillness, rel=1e-6)


# -- streaming -----------------------------------------------------------------------------


def long_day() -> Signal:
    return np.concatenate(
        [
            fall_while_walking(seed=20),
            walking(20.0, seed=21),
            sitting_down_hard(seed=22),
            fall_from_chair(seed=23),
            lying_down_on_bed(seed=24),
            jump(seed=25),
            stumble_with_recovery(seed=26),
            device_dropped(seed=27),
            fall_with_bounce(seed=28),
        ]
    )


def test_streaming_equals_one_batch_at_any_batch_size() -> None:
    signal = long_day()
    t0 = 1_700_000_000.0
    whole = detect_falls(signal, t0=t0)
    assert len(whole) == 3
    for batch in (1, 7, 50, 333, 1000, len(signal)):
        assert stream(signal, batch, t0) == whole, f"batch size {batch}"


def test_results_do_not_depend_on_where_the_ring_buffer_wraps() -> None:
    """Shift the same fall through every position relative to the ring buffer's end."""
    fall = fall_while_walking()
    reference = detect_falls(fall)[0]
    capacity = FallDetector()._capacity
    for shift in range(0, capacity + 1, 23):
        signal = np.concatenate((np.tile(UP, (shift, 1)), fall))
        [found] = stream(signal, 50)
        assert found.time == pytest.approx(reference.time + shift / FS, abs=1e-9)
        assert found.peak_g == reference.peak_g
        assert found.impact_mps == pytest.approx(reference.impact_mps, rel=1e-12)
        assert found.posture_change_deg == pytest.approx(reference.posture_change_deg, rel=1e-9)
        assert found.stillness == pytest.approx(reference.stillness, rel=1e-9)


def test_float32_input_gives_the_same_result_as_its_float64_value() -> None:
    signal = fall_while_walking().astype(np.float32)
    assert detect_falls(signal) == detect_falls(signal.astype(np.float64))


def test_reset_forgets_the_past() -> None:
    signal = fall_while_walking()
    detector = FallDetector()
    assert detector.update(0.0, signal[:340]) == []  # impact seen, after-window pending
    detector.reset()
    assert detector.update(100.0, signal[340:]) == []
    detector.reset()
    assert len(detector.update(200.0, signal)) == 1


def test_gap_in_time_restarts_the_stream() -> None:
    signal = fall_while_walking()
    detector = FallDetector()
    assert detector.update(0.0, signal[:340]) == []
    # The rest arrives 10 s later than contiguous samples would: windows must not span it.
    assert detector.update(340 / FS + 10.0, signal[340:]) == []
    contiguous = FallDetector()
    contiguous.update(0.0, signal[:340])
    assert len(contiguous.update(340 / FS + 0.02, signal[340:])) == 1  # jitter tolerated


def test_empty_batch_is_harmless() -> None:
    detector = FallDetector()
    assert detector.update(0.0, np.zeros((0, 3))) == []
    assert len(detector.update(0.0, fall_while_walking())) == 1


@pytest.mark.parametrize("shape", [(10,), (10, 2), (10, 3, 1)])
def test_rejects_badly_shaped_samples(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        FallDetector().update(0.0, np.zeros(shape))


@pytest.mark.parametrize(
    "change",
    [
        {"fs": 0.0},
        {"impact_g": 0.0},
        {"refractory_s": -1.0},
        {"after_start_s": 3.0, "after_end_s": 2.0},
        {"before_start_s": 1.2, "before_end_s": 1.0},
        {"min_posture_change_deg": 200.0},
    ],
)
def test_rejects_inconsistent_params(change: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(FallParams(), **change)


def test_detect_falls_checks_sample_rate() -> None:
    with pytest.raises(ValueError, match="fs"):
        detect_falls(walking(5.0), fs=100.0, params=FallParams())
    assert detect_falls(fall_while_walking(), fs=50.0, params=FallParams()) != []


def test_thresholds_are_honoured() -> None:
    """Raising a threshold above the evidence suppresses the candidate."""
    signal = fall_from_chair()
    fall = detect_falls(signal)[0]
    stricter = [
        FallParams(min_impulse_mps=fall.impact_mps + 0.1),
        FallParams(min_posture_change_deg=fall.posture_change_deg + 1.0),
        FallParams(max_after_motion_g=fall.stillness * 0.5),
        FallParams(impact_g=fall.peak_g + 0.1),
    ]
    for params in stricter:
        assert detect_falls(signal, params=params) == [], params


def test_hard_landing_after_getting_up_from_lying_is_not_a_fall() -> None:
    """Lying → standing → hard landing: the look-back still holds the lying posture, but
    the landing did not turn the trunk (standing before and after it)."""
    trace = (
        Trace()
        .hold(6.0, SUPINE)
        .turn(1.0, SUPINE, UP)
        .hold(1.5, UP)
        .free_fall(0.2)
        .impact(4.0, 0.03, UP)
        .hold(5.0, UP)
        .build()
    )
    assert detect_falls(trace) == []
    # Without the fall-turn test the angle to the earlier lying posture alone would pass.
    assert len(detect_falls(trace, params=FallParams(min_fall_turn_deg=0.0))) == 1


@pytest.mark.parametrize(
    "params",
    [
        FallParams(before_start_s=12.0, after_start_s=2.0, after_end_s=6.0, peak_window_s=2.0),
        FallParams(peak_window_s=0.2, impulse_window_s=1.5, free_fall_search_s=3.0),
    ],
)
def test_streaming_equality_holds_for_other_windows(params: FallParams) -> None:
    """The ring buffer and scan lag follow the parameters, not the defaults."""
    signal = long_day()
    whole = FallDetector(params).update(0.0, signal)
    assert len(whole) >= 3
    for batch in (1, 50, 333):
        detector = FallDetector(params)
        streamed: list[FallCandidate] = []
        for first in range(0, len(signal), batch):
            streamed += detector.update(first / FS, signal[first : first + batch])
        assert streamed == whole, f"batch size {batch}"
