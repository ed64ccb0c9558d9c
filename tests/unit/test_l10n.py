"""The Python message catalogue (gateway.l10n): both languages, a sentence for every
incident type, times in the site's zone with the zone named, and the rendered messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import l10n
from gateway.notify.messages import (
    Audience,
    IncidentFacts,
    PageFacts,
    render,
    render_page,
)
from gateway.workflow.transitions import IncidentType

RAISED = datetime(2026, 11, 23, 1, 5, tzinfo=UTC)
LAST_SEEN = datetime(2026, 11, 23, 0, 30, tzinfo=UTC).timestamp()  # 08:30 at UTC+8
# Details as the detectors write them (analytics.*), one set per incident type.
DETAILS: dict[str, dict[str, Any]] = {
    "emergency_call": {"long_press": True},
    "fall": {"peak_g": 3.6, "posture_change_deg": 85, "confirm_window_s": 30},
    "not_up": {"usual_rise_late": "07:30", "deadline": "08:30"},
    "night_bed_exit": {"exit_time": "02:10", "tolerance_s": 1800},
    "no_activity": {"no_activity_s": 14400},
    "motionless_in_bed": {"limit_s": 7200},
    "vitals_abnormal": {"metric": "heart_rate", "value": 128.0, "limit": 120.0},
    "apnea": {"longest_s": 42.0, "count": 5},
    "not_worn": {"device_kind": "wearable"},
    "device_offline": {"device_kind": "bed_sensor", "last_seen": LAST_SEEN},
    "hub_offline": {"devices": 4, "last_seen": LAST_SEEN},
    "site_offline": {"devices": 40, "last_seen": LAST_SEEN},
    "low_battery": {"device_kind": "button", "battery_pct": 12},
    "device_clock_wrong": {"device_kind": "wearable"},
    "smoke_alarm": {},
    "gas_alarm": {},
    "water_leak": {},
    "door_open_at_night": {},
    "device_tampered": {"device_kind": "smoke_detector"},
    "door_unused": {"unused_days": 3.2, "last_opened": LAST_SEEN},
}
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_incident_type_has_a_label_and_a_sentence_in_both_languages() -> None:
    types = {t.value for t in IncidentType}
    assert set(DETAILS) == types  # the table above covers the schema's types
    for lang in l10n.LANGUAGES:
        assert set(l10n.INCIDENT_TYPES[lang]) == types
        assert set(l10n.REASONS[lang]) == types
        for itype in types:
            said = l10n.reason(lang, itype, DETAILS[itype], 8 * 3600)
            assert said, (lang, itype)
            bare = l10n.reason(lang, itype, {}, 8 * 3600)  # details missing: still a sentence
            assert bare, (lang, itype)
            if lang == "en":
                assert not HAN.search(said), said
            else:
                assert HAN.search(said), said


def test_reason_sentences_match_the_consoles() -> None:
    zh = l10n.reason("zh-CN", "fall", DETAILS["fall"], 28800)
    assert zh == "跌倒：撞击 3.6g 后平躺未起，30 秒内未取消"
    en = l10n.reason("en", "fall", DETAILS["fall"], 28800)
    assert en == "Fall: impact 3.6 g, then lying still; not cancelled within 30 s"
    sos = l10n.reason("zh-CN", "fall", {"sos": True}, 28800)
    assert sos == "跌倒：手环报告跌倒，住户按了求助键"
    assert (
        l10n.reason("zh-CN", "device_offline", DETAILS["device_offline"], 28800)
        == "设备离线：床垫传感器自 11-23 08:30 (UTC+8) 起无消息"
    )
    assert l10n.reason("en", "night_bed_exit", DETAILS["night_bed_exit"], 28800) == (
        "Night bed exit: got up at 02:10, not back within 30 min"
    )
    assert l10n.reason("zh-CN", "no_activity", DETAILS["no_activity"], 0) == (
        "无活动：4 小时内没有任何活动迹象"
    )
    assert l10n.reason("zh-CN", "unknown_type", {}, 0) is None
    # Broken details never raise; control characters never reach a message.
    assert l10n.reason("en", "not_up", {"usual_rise_late": "07:30\n\x1b[31m"}, 0) is not None
    assert "\n" not in (l10n.reason("en", "not_up", {"deadline": "a\nb"}, 0) or "")
    assert l10n.reason("en", "fall", {"peak_g": "nan"}, 0) == (
        "Fall: the wristband reported a fall; not cancelled within 30 s"
    )


def test_the_console_has_a_sentence_for_each_type_this_catalogue_has() -> None:
    """The console's REASONS (i18n.js) is the model: every type it explains, we explain."""
    js = (Path(l10n.__file__).parent / "api" / "static" / "i18n.js").read_text(encoding="utf-8")
    block = js[js.index("const REASONS") :]
    console_types = set(re.findall(r"^\s{6}(\w+): \(", block, re.MULTILINE))
    assert console_types and console_types <= set(l10n.REASONS["zh-CN"])


@pytest.mark.parametrize(
    ("value", "lang"),
    [(None, "zh-CN"), ("", "zh-CN"), ("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("fr", "zh-CN"),
     ("en", "en"), ("en-GB", "en"), ("EN_us", "en")],
)  # fmt: skip
def test_language_choice_defaults_to_zh_cn(value: str | None, lang: str) -> None:
    assert l10n.language(value) == lang


def test_times_name_the_zone() -> None:
    assert l10n.zone_name(28800) == "UTC+8"
    assert l10n.zone_name(-12600) == "UTC-3:30"
    assert l10n.zone_name(0) == "UTC+0"
    assert l10n.local_time(RAISED, 28800) == "2026-11-23 09:05 (UTC+8)"
    assert l10n.local_time(RAISED.replace(tzinfo=None), 0) == "2026-11-23 01:05 (UTC+0)"
    assert l10n.duration("zh-CN", 5400) == "1 小时 30 分钟"
    assert l10n.duration("en", 45) == "45 s"


def test_messages_exist_in_both_languages() -> None:
    assert set(l10n.MESSAGES["zh-CN"]) == set(l10n.MESSAGES["en"])
    assert l10n.t("en", "page.code", code="123456") == "or reply 123456 by SMS"
    assert l10n.t("zh-CN", "no.such.key") == "no.such.key"


FACTS = IncidentFacts(42, "fall", "BED-0301", "Room 301", RAISED, resident_name="王秀英",
                      details=DETAILS["fall"])  # fmt: skip


def test_family_message_in_each_language() -> None:
    zh = render(FACTS, Audience.PRIVATE_FAMILY)
    assert zh.title == "【安居守护】跌倒"
    assert zh.body == (
        "王秀英（Room 301 / BED-0301） 于 2026-11-23 09:05 (UTC+8) 发生跌倒。"
        "跌倒：撞击 3.6g 后平躺未起，30 秒内未取消。请尽快联系服务中心确认。事件编号 42"
    )
    en = render(FACTS, Audience.GROUP, "en")
    assert en.title == "[Safe-Home Guardian] Fall"
    assert "王秀英" not in en.body and not HAN.search(en.body)
    assert en.body.startswith("Room 301 / BED-0301: fall at 2026-11-23 09:05 (UTC+8). Fall: ")
    assert en.fields["language"] == "en" and en.fields["time_zone"] == "UTC+8"


def test_staff_page_in_each_language() -> None:
    page = PageFacts("duty_staff", "reminder", "123456", "https://x/ack/t")
    zh = render_page(FACTS, page)
    assert zh.title == "【安居守护】请确认（再次提醒）：跌倒"
    assert "打开链接确认：https://x/ack/t" in zh.body and "或短信回复 123456 确认" in zh.body
    assert "王秀英" not in zh.body
    en = render_page(FACTS, page, "en")
    assert en.title == "[Safe-Home Guardian] Please acknowledge (reminder): Fall"
    assert "Acknowledge: https://x/ack/t" in en.body and not HAN.search(en.body)
