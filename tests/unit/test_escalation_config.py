"""Escalation ladder configuration: the shipped file, overrides, priorities, validation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.escalation.ladder import (
    Audience,
    EscalationConfigError,
    load_ladders,
    parse_ladders,
)
from gateway.settings import PROJECT_ROOT, SettingsError, load_settings

TIERS: list[dict[str, Any]] = [
    {"name": "duty_staff", "audience": "duty_staff", "timeout_s": 60, "reminder_s": 20},
    {"name": "supervisor", "audience": "supervisor", "timeout_s": 120},
    {"name": "contacts", "audience": "contacts", "timeout_s": 300, "max_priority": 3},
    {"name": "emergency", "audience": "emergency", "timeout_s": 60, "max_priority": 2,
     "instruction": "call 120"},
]  # fmt: skip


def test_shipped_ladder_is_valid_and_ends_with_an_emergency_instruction() -> None:
    settings = load_settings(environ={})
    config = load_ladders(settings.escalation.ladder_path())
    tiers = config.default.tiers
    assert [t.audience for t in tiers] == [
        Audience.DUTY_STAFF, Audience.SUPERVISOR, Audience.CONTACTS, Audience.EMERGENCY
    ]  # fmt: skip
    assert tiers[-1].instruction and "120" in tiers[-1].instruction
    assert settings.escalation.ladder_path() == PROJECT_ROOT / "config" / "escalation.toml"


def test_priority_shortens_timeouts_and_reminders() -> None:
    config = parse_ladders({"ladder": {"tiers": TIERS, "priority_scale": {"1": 0.5, "4": 2}}})
    ladder = config.default
    assert ladder.timeout_s(0, 1) == 30.0
    assert ladder.reminder_s(0, 1) == 10.0
    assert ladder.timeout_s(0, 2) == 60.0  # not configured: 1.0
    assert ladder.timeout_s(0, 4) == 120.0
    assert ladder.reminder_s(1, 1) is None


def test_tiers_apply_by_priority() -> None:
    ladder = parse_ladders({"ladder": {"tiers": TIERS}}).default
    assert ladder.next_tier(-1, 1) == 0
    assert ladder.next_tier(1, 1) == 2
    assert ladder.next_tier(2, 1) == 3
    assert ladder.next_tier(2, 3) is None  # no "call 120" for a priority 3 incident
    assert ladder.next_tier(1, 4) is None  # nor family notices for a low battery


def test_site_override_replaces_only_the_keys_it_names() -> None:
    config = parse_ladders(
        {
            "ladder": {"tiers": TIERS, "priority_scale": {"1": 0.5}},
            "sites": {
                "site-a": {"priority_scale": {"1": 0.25}},
                "site-b": {"tiers": TIERS[:1] + TIERS[3:]},
            },
        }
    )
    assert config.ladder("site-a").timeout_s(0, 1) == 15.0
    assert [t.name for t in config.ladder("site-a").tiers] == [t["name"] for t in TIERS]
    assert [t.name for t in config.ladder("site-b").tiers] == ["duty_staff", "emergency"]
    assert config.ladder("site-b").scale(1) == 0.5  # inherited
    assert config.ladder("elsewhere") is config.default


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "[ladder]"),
        ({"ladder": {"tiers": []}}, "ladder.tiers"),
        ({"ladder": {"tiers": [{**TIERS[3], "instruction": None}]}}, "needs an instruction"),
        ({"ladder": {"tiers": [TIERS[0], TIERS[0]]}}, "unique"),
        ({"ladder": {"tiers": [{**TIERS[0], "timeout_s": 0}]}}, "timeout_s"),
        ({"ladder": {"tiers": [{**TIERS[0], "audience": "pager"}]}}, "audience"),
        ({"ladder": {"tiers": TIERS, "priority_scale": {"9": 1}}}, "outside 1..5"),
        ({"ladder": {"tiers": TIERS, "priority_scale": {"1": 0}}}, "> 0"),
        ({"ladder": {"tiers": TIERS}, "sites": {"s1": {"tiers": [{"name": "x"}]}}}, "sites.s1"),
        ({"ladder": {"tiers": TIERS}, "extra": 1}, "unknown top-level"),
    ],
)
def test_invalid_ladders_are_refused_with_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(EscalationConfigError, match=re.escape(message)):
        parse_ladders(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(EscalationConfigError, match="not found"):
        load_ladders(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ladder\n")
    with pytest.raises(EscalationConfigError, match="invalid TOML"):
        load_ladders(bad)


def test_notify_and_escalation_sections_load_and_secrets_stay_out_of_toml(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL": "http://127.0.0.1:9/hook",
            "SAFEHOME_ESCALATION__POLL_INTERVAL_S": "0.2",
        }
    )
    assert settings.escalation.poll_interval_s == 0.2
    assert settings.notify.webhooks["webhook"].url.get_secret_value().endswith("/hook")
    overlay = tmp_path / "gw.toml"
    overlay.write_text('[notify.webhooks.webhook]\nurl = "http://127.0.0.1:9/hook"\n')
    with pytest.raises(SettingsError, match=r"notify\.webhooks\.webhook\.url is a secret"):
        load_settings(config_file=overlay, environ={})


def test_smoke_and_gas_alarms_climb_the_hazard_ladder_of_the_shipped_file() -> None:
    from pathlib import Path

    from gateway.escalation.ladder import load_ladders

    config = load_ladders(Path("config/escalation.toml"))
    assert config.hazard is not None
    for itype in ("smoke_alarm", "gas_alarm"):
        ladder = config.ladder("any-site", itype)
        assert ladder is config.hazard
        assert ladder.tiers[0].name == "call_119" and "119" in (ladder.tiers[0].instruction or "")
        assert [t.audience.value for t in ladder.tiers][:2] == ["emergency", "contacts"]
    assert config.ladder("any-site", "water_leak") is config.default  # a care incident
    assert config.ladder("any-site", "fall") is config.default
