"""Rendering of incident notifications, with redaction by audience.

The resident's name appears only when the audience is a *private one-to-one* channel to a
*consented family member* (:attr:`Audience.PRIVATE_FAMILY`). Everything else (group bots,
community workers, generic webhooks, SMS templates) gets the bed code, the room label and
the incident type only. Rendering is pure: no I/O, no clock reads.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from gateway.facts import DEFAULT_UTC_OFFSET_S_INT

# Labels for incident types; unknown types fall back to their (sanitised) code.
INCIDENT_LABELS: dict[str, str] = {  # the types of migration 0010 (incidents.type)
    "emergency_call": "紧急呼叫 / emergency call",
    "fall": "跌倒 / fall",
    "not_up": "未按时起床 / not up",
    "night_bed_exit": "夜间离床未归 / out of bed at night",
    "no_activity": "长时间无活动 / no activity",
    "motionless_in_bed": "床上长时间不动 / motionless in bed",
    "vitals_abnormal": "生命体征异常 / abnormal vital signs",
    "apnea": "呼吸暂停 / apnoea",
    "not_worn": "设备未佩戴 / device not worn",
    "device_offline": "设备离线 / device offline",
    "hub_offline": "网关离线 / hub offline",
    "site_offline": "站点离线 / site offline",
    "low_battery": "电量低 / low battery",
    "device_clock_wrong": "设备时钟错误 / device clock wrong",
    "smoke_alarm": "烟雾报警 / smoke alarm",
    "gas_alarm": "燃气泄漏报警 / gas alarm",
    "water_leak": "漏水 / water leak",
    "door_open_at_night": "夜间开门 / door open at night",
    "device_tampered": "设备被拆动 / device tampered",
}

_CODE_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


class Audience(enum.Enum):
    """Who reads the message, which decides what it may contain."""

    GROUP = "group"  # a group chat bot: several people, not all consented
    PRIVATE = "private"  # a one-to-one channel to someone who is not a family member
    PRIVATE_FAMILY = "private_family"  # a one-to-one channel to a consented family member


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What a notification may say about an incident (names are optional and redacted)."""

    incident_id: int
    incident_type: str
    bed_code: str | None
    room: str | None
    raised_at: datetime
    resident_name: str | None = None
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A rendered notification: a title, a plain-text body and structured fields."""

    title: str
    body: str
    fields: dict[str, Any]


def incident_label(incident_type: str) -> str:
    """Human label of an incident type (a sanitised code when unknown)."""
    return INCIDENT_LABELS.get(incident_type, _CODE_SAFE.sub("_", incident_type)[:40])


def place_label(facts: IncidentFacts) -> str:
    """Bed code and room, the only location a message ever carries (never an address)."""
    parts = [p for p in (facts.room, facts.bed_code) if p]
    return " / ".join(parts) if parts else "-"


def local_time(facts: IncidentFacts) -> str:
    """The incident time in the site's local time, ``YYYY-MM-DD HH:MM``."""
    raised = facts.raised_at
    if raised.tzinfo is None:
        raised = raised.replace(tzinfo=UTC)
    tz = timezone(timedelta(seconds=facts.utc_offset_s))
    return raised.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def render(facts: IncidentFacts, audience: Audience) -> RenderedMessage:
    """Render ``facts`` for ``audience``; the name is kept only for PRIVATE_FAMILY."""
    label = incident_label(facts.incident_type)
    place = place_label(facts)
    when = local_time(facts)
    name = facts.resident_name if audience is Audience.PRIVATE_FAMILY else None
    who = f"{name}（{place}）" if name else place
    title = f"【安居守护】{label}"
    body = f"{who} 于 {when} 发生：{label}。请尽快联系服务中心确认。事件编号 {facts.incident_id}"
    fields: dict[str, Any] = {
        "incident_id": facts.incident_id,
        "incident_type": facts.incident_type,
        "label": label,
        "bed_code": facts.bed_code,
        "room": facts.room,
        "raised_at": facts.raised_at.isoformat(),
        "local_time": when,
    }
    if name:
        fields["resident_name"] = name
    return RenderedMessage(title=title, body=body, fields=fields)


def sms_params(facts: IncidentFacts) -> dict[str, str]:
    """Parameters of the approved SMS template: never a name, never free text.

    Template variables (to be approved with the provider, e.g.
    ``您关注的${place}于${time}发生${type}，请尽快联系服务中心。``).
    """
    return {
        "place": place_label(facts)[:35],
        "time": local_time(facts),
        "type": incident_label(facts.incident_type).split(" / ")[0][:35],
    }


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What a staff page says besides the incident facts: the tier, the reply code, the link."""

    tier_name: str
    kind: str  # page | reminder | instruction
    code: str | None
    link: str | None
    instruction: str | None = None  # the emergency tier's instruction (e.g. call 120)


def render_page(facts: IncidentFacts, page: PageFacts) -> RenderedMessage:
    """A staff page (zh-CN first, English second): place, type, time, how to acknowledge."""
    label = incident_label(facts.incident_type)
    place = place_label(facts)
    when = local_time(facts)
    again = "（再次提醒）" if page.kind == "reminder" else ""
    title = f"【安居守护】请确认{again}：{label}"
    how: list[str] = []
    if page.link:
        how.append(f"打开链接确认 / acknowledge: {page.link}")
    if page.code:
        how.append(f"或短信回复 {page.code} / or reply {page.code} by SMS")
    todo = f"\n{page.instruction}" if page.instruction else ""
    body = (
        f"{place} 于 {when} 发生：{label}，尚无人确认。事件编号 {facts.incident_id}"
        f"（{page.tier_name}）。{todo}\n" + "\n".join(how)
    )
    fields: dict[str, Any] = {
        "incident_id": facts.incident_id,
        "incident_type": facts.incident_type,
        "label": label,
        "bed_code": facts.bed_code,
        "room": facts.room,
        "raised_at": facts.raised_at.isoformat(),
        "local_time": when,
        "tier": page.tier_name,
        "kind": page.kind,
        "ack_code": page.code,
        "ack_url": page.link,
        "instruction": page.instruction,
    }
    return RenderedMessage(title=title, body=body, fields=fields)


def page_params(facts: IncidentFacts, page: PageFacts) -> dict[str, str]:
    """Parameters of the approved staff SMS / voice template (variables place, time, type,
    code), e.g. ``${place}于${time}发生${type}，无人确认。回复${code}确认。``."""
    return {**sms_params(facts), "code": page.code or ""}
