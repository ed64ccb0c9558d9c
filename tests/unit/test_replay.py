"""Replay of a recording (the simulator's JSON lines) through decode and the analysis runner."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.routine import day_start
from analytics.types import DetectionKind
from devices import protocol as p
from devices.manifest import ManifestDevice, SiteManifest, save_manifest
from devices.protocol import DeviceKind
from gateway.analysis import MemoryStore
from gateway.cli import main
from gateway.replay import BAD_LINE, infer_registry, registry_from_manifest, render, replay
from gateway.settings import AnalysisSettings
from tests.unit.test_analysis_runner import SUPINE, fall_signal, still_signal

T0 = day_start(19737, 8 * 3600.0) + 10 * 3600.0  # 10:00 local
SITE = "s1"
IMPACT = T0 + 40.0 + 6.6


def _line(dev: str, channel: str, payload: bytes, at: float) -> bytes:
    return orjson.dumps(
        {"topic": f"shg/v1/{SITE}/{dev}/{channel}", "payload": orjson.loads(payload),
         "received_at": at}
    )  # fmt: skip


def recording(path: Path) -> Path:
    """A minute at home: a button press (sent twice: a retry), a fall 40 s in (its window
    ends after the recording), 1 Hz bed readings with nobody in bed, wearable heartbeats;
    plus a broken line and a device the registry does not know."""
    lines: list[tuple[float, bytes]] = []
    signal = np.concatenate([still_signal(40.0), fall_signal(), still_signal(5.4, SUPINE)])  # 60 s
    for k in range(0, len(signal), 50):
        t = T0 + k / 50.0
        payload = p.encode_accel("wr1", f"a{k}", k, int(t * 1000), samples=signal[k : k + 50])
        lines.append((t + 1.0, _line("wr1", "telemetry", payload, t + 1.0)))
    for i in range(60):
        t = T0 + i
        payload = p.encode_vitals("bs1", f"v{i}", i, int(t * 1000), presence=False, hr=None,
                                  rr=None, movement=0.0)  # fmt: skip
        lines.append((t + 0.1, _line("bs1", "telemetry", payload, t + 0.1)))
        if i % 10 == 0:
            hb = p.encode_heartbeat("wr1", f"h{i}", 9000 + i, int(t * 1000), battery=70, worn=True)
            lines.append((t + 0.2, _line("wr1", "telemetry", hb, t + 0.2)))
    press = p.encode_event("bt1", "press-1", 1, int((T0 + 5) * 1000), event="press")
    lines.append((T0 + 5.1, _line("bt1", "event", press, T0 + 5.1)))
    lines.append((T0 + 10.1, _line("bt1", "event", press, T0 + 10.1)))  # the device's retry
    stranger = p.encode_event("xx9", "s1", 1, int(T0 * 1000), event="press")
    lines.append((T0 + 6.0, _line("xx9", "event", stranger, T0 + 6.0)))
    lines.append((T0 + 7.0, b'{"topic": "shg/v1/s1/bt1/event", "payl'))
    lines.sort(key=lambda item: item[0])
    path.write_bytes(b"\n".join(line for _, line in lines) + b"\n")
    return path


def manifest(path: Path) -> Path:
    devices = tuple(
        ManifestDevice(dev, kind, "secret-pw", bed="b1", resident="r1", location="l1")
        for dev, kind in (
            ("bs1", DeviceKind.BED_SENSOR),
            ("wr1", DeviceKind.WEARABLE),
            ("bt1", DeviceKind.BUTTON),
        )
    )
    save_manifest(SiteManifest(SITE, devices), path)
    return path


def test_replay_finds_the_emergency_call_and_the_fall(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl")
    registry = registry_from_manifest(
        SiteManifest(SITE, (ManifestDevice("bs1", DeviceKind.BED_SENSOR, "x", resident="r1"),
                            ManifestDevice("wr1", DeviceKind.WEARABLE, "x", resident="r1"),
                            ManifestDevice("bt1", DeviceKind.BUTTON, "x", resident="r1")))
    )  # fmt: skip
    result = replay(rec, AnalysisSettings(), MemoryStore(registry))
    assert [(r.kind, r.subject, r.device_id) for r in result.detections] == [
        (DetectionKind.EMERGENCY_CALL, "r1", "bt1"),
        (DetectionKind.FALL, "r1", "wr1"),
    ]
    fall = result.detections[1]
    assert fall.started == pytest.approx(IMPACT, abs=0.05)
    assert fall.time == pytest.approx(IMPACT + 30.0, abs=0.05)  # confirmed in the tail
    assert result.duplicates == 1
    assert result.rejected == {"unknown_device": 1, BAD_LINE: 1}
    assert result.messages == 60 + 60 + 6 + 1
    summary = result.summary()
    assert summary["detections"] == {"emergency_call": 1, "fall": 1}
    assert summary["span_s"] == pytest.approx(60.0, abs=0.5)
    out = io.StringIO()
    render(result, out, as_json=False)
    text = out.getvalue().splitlines()
    assert text[0].startswith("2024-01-15 10:00:05+0800  RAISED   emergency_call")
    assert "RAISED   fall" in text[1] and "r1" in text[1]
    assert text[-1].startswith("replayed 127 messages from 3 devices (1 duplicates, 2 rejected)")


def test_registry_is_inferred_from_the_recording(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl")
    registry = infer_registry(rec)
    assert {d: i.kind for d, i in registry.devices.items()} == {
        "wr1": DeviceKind.WEARABLE,
        "bs1": DeviceKind.BED_SENSOR,
        "bt1": DeviceKind.BUTTON,
        "xx9": DeviceKind.BUTTON,
    }
    result = replay(rec, AnalysisSettings(), MemoryStore(registry))
    # no residents known: every device stands for itself
    assert [(r.kind, r.subject) for r in result.detections] == [
        (DetectionKind.EMERGENCY_CALL, "bt1"),
        (DetectionKind.EMERGENCY_CALL, "xx9"),
        (DetectionKind.FALL, "wr1"),
    ]


def test_replay_command_prints_json_lines_and_a_summary_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = recording(tmp_path / "rec.jsonl")
    man = manifest(tmp_path / "site.json")
    assert main(["replay", str(rec), "--manifest", str(man), "--json"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["kind"] for d in lines[:-1]] == ["emergency_call", "fall"]
    assert all(d["type"] == "detection" and d["resident_id"] == "r1" for d in lines[:-1])
    assert lines[1]["location_id"] == "l1" and lines[1]["started"].startswith("2024-01-15T02:00:4")
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["messages"] == 127 and summary["duplicates"] == 1
    assert summary["rejected"] == {"unknown_device": 1, "bad_line": 1}
    assert summary["detections"] == {"emergency_call": 1, "fall": 1}
    # a tail too short for the confirmation window: the fall is still pending
    assert main(["replay", str(rec), "--manifest", str(man), "--json", "--tail", "5"]) == 0
    last = orjson.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["detections"] == {"emergency_call": 1}


def test_replay_command_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "safehome replay:" in capsys.readouterr().err
