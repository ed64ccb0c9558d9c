"""Installer CLI output and test-progress helpers: cells, times, when a test is settled,
what a step shows, how local and gateway CSV errors merge."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.installer.cmd_devices import seen, settled
from gateway.installer.cmd_registry import merge_errors
from gateway.installer.csvcheck import RowError
from gateway.installer.output import ago, cell, escape, lookup


def test_cells() -> None:
    assert cell(None) == "-" and cell([]) == "-"
    assert cell(True) == "yes" and cell(False) == "no"
    assert cell(["a", "b"]) == "a, b"
    assert cell({"a": 1}) == '{"a":1}'
    assert cell("Room 1") == "Room 1"
    assert escape("[bold]x") == r"\[bold]x"  # data never becomes rich markup
    assert lookup({"a": {"b": 2}}, "a.b") == 2 and lookup({"a": 1}, "a.b") is None


def test_ago() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert ago(None) == "never"
    assert ago("2026-11-23T11:59:50Z", now) == "10s ago"
    assert ago("2026-11-23T11:55:00+00:00", now) == "5m ago"
    assert ago("2026-11-21T12:00:00+00:00", now) == "2d ago"


def _state(status: str, *steps: tuple[str, str], notified: bool = False) -> dict[str, object]:
    return {"status": status, "family_notified": notified,
            "steps": [{"name": n, "status": s} for n, s in steps]}  # fmt: skip


def test_when_a_test_is_settled() -> None:
    assert not settled(_state("running", ("press", "waiting"), ("no_page", "waiting")))
    # The button's no_page step waits for the press; nothing else to wait for.
    assert settled(_state("running", ("press", "passed"), ("no_page", "waiting")))
    assert not settled(
        _state("running", ("press", "passed"), ("no_page", "waiting"), notified=True)
    )
    assert settled(_state("running", ("worn", "failed"), ("motion", "waiting")))
    assert settled(_state("expired", ("presence_on", "waiting")))
    assert not settled(_state("running", ("presence_on", "passed"), ("vitals", "waiting")))


def test_a_step_shows_arrival_and_the_values_that_matter() -> None:
    assert seen({}) == "-" and seen(None) == "-"
    text = seen({"reading": "vitals", "received_at": "2026-11-23T08:00:01Z",
                  "device_time": "2026-11-23T08:00:00Z", "heart_rate": 62.0})  # fmt: skip
    assert text.startswith("arrived ") and "reading=vitals" in text
    assert "heart_rate=62.0" in text and "device_time" not in text


def test_local_and_gateway_errors_merge_once_per_line() -> None:
    local = [RowError(3, "bad code", "bed_code")]
    remote = [RowError(3, "something", "bed_code"), RowError(4, "unknown location", "x")]
    assert [(e.line, e.message) for e in merge_errors(local, remote)] == [
        (3, "bad code"), (4, "unknown location"),
    ]  # fmt: skip
