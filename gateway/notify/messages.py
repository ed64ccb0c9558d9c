"""Rendering of incident notifications, with redaction by audience and the reader's language.

The resident's name appears only when the audience is a *private one-to-one* channel to a
*consented family member* (:attr:`Audience.PRIVATE_FAMILY`). Everything else (group bots,
community workers, generic webhooks, SMS templates) gets the bed code, the room label and
the incident type only. Every message is plain zh-CN by default, English when the recipient
chose it (``contacts.language``, ``users.language``); the words come from the catalogue
:mod:`gateway.l10n`, the reason sentence from the incident's details, the time in the
site's zone with the zone named. Rendering is pure: no I/O, no clock reads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway import l10n
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.l10n import DEFAULT_LANGUAGE, Lang

# Labels for incident types (zh-CN); unknown types fall back to their (sanitised) code.
INCIDENT_LABELS: dict[str, str] = l10n.INCIDENT_TYPES[DEFAULT_LANGUAGE]


class Audience(enum.Enum):
    """Who reads the message, which decides what it may contain."""

    GROUP = "group"  # a group chat bot: several people, not all consented
    PRIVATE = "private"  # a one-to-one channel to someone who is not a family member
    PRIVATE_FAMILY = "private_family"  # a one-to-one channel to a consented family member


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What a notification may say about an incident (names are optional and redacted;
    ``details`` are the incident's detection details, for the reason sentence)."""

    incident_id: int
    incident_type: str
    bed_code: str | None
    room: str | None
    raised_at: datetime
    resident_name: str | None = None
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A rendered notification: a title, a plain-text body and structured fields."""

    title: str
    body: str
    fields: dict[str, Any]


def incident_label(incident_type: str, lang: Lang = DEFAULT_LANGUAGE) -> str:
    """Human label of an incident type (a sanitised code when unknown)."""
    return l10n.type_label(lang, incident_type)


def place_label(facts: IncidentFacts) -> str:
    """Bed code and room, the only location a message ever carries (never an address)."""
    parts = [p for p in (facts.room, facts.bed_code) if p]
    return " / ".join(parts) if parts else "-"


def local_time(facts: IncidentFacts) -> str:
    """The incident time in the site's zone, named: ``YYYY-MM-DD HH:MM (UTC+8)``."""
    return l10n.local_time(facts.raised_at, facts.utc_offset_s)


def reason_sentence(facts: IncidentFacts, lang: Lang = DEFAULT_LANGUAGE) -> str | None:
    """The plain sentence for the incident's reason (None: none for its type)."""
    return l10n.reason(lang, facts.incident_type, facts.details, facts.utc_offset_s)


def _common_fields(facts: IncidentFacts, lang: Lang) -> dict[str, Any]:
    return {
        "incident_id": facts.incident_id,
        "incident_type": facts.incident_type,
        "label": incident_label(facts.incident_type, lang),
        "reason": reason_sentence(facts, lang),
        "language": lang,
        "bed_code": facts.bed_code,
        "room": facts.room,
        "raised_at": facts.raised_at.isoformat(),
        "local_time": local_time(facts),
        "time_zone": l10n.zone_name(facts.utc_offset_s),
    }


def _reason_part(facts: IncidentFacts, lang: Lang) -> str:
    said = reason_sentence(facts, lang)
    if not said:
        return ""
    return f"{said}。" if lang == "zh-CN" else f"{said}. "


def render(
    facts: IncidentFacts, audience: Audience, lang: Lang = DEFAULT_LANGUAGE
) -> RenderedMessage:
    """Render ``facts`` for ``audience`` in ``lang``; the name is kept only for
    PRIVATE_FAMILY."""
    label = incident_label(facts.incident_type, lang)
    place = place_label(facts)
    name = facts.resident_name if audience is Audience.PRIVATE_FAMILY else None
    who = l10n.t(lang, "notify.who", name=name, place=place) if name else place
    title = l10n.t(lang, "notify.title", Label=label[:1].upper() + label[1:])
    body = l10n.t(lang, "notify.body", who=who, when=local_time(facts), label=label,
                  reason=_reason_part(facts, lang), id=facts.incident_id)  # fmt: skip
    fields = _common_fields(facts, lang)
    if name:
        fields["resident_name"] = name
    return RenderedMessage(title=title, body=body, fields=fields)


def sms_params(facts: IncidentFacts, lang: Lang = DEFAULT_LANGUAGE) -> dict[str, str]:
    """Parameters of the approved SMS template: never a name, never free text.

    Template variables (to be approved with the provider, e.g.
    ``您关注的${place}于${time}（北京时间）发生${type}，请尽快联系服务中心。``): providers check
    a time variable's format, so ``time`` is the bare site time ``YYYY-MM-DD HH:MM`` and the
    approved template's text names the zone.
    """
    return {
        "place": place_label(facts)[:35],
        "time": l10n.local_time(facts.raised_at, facts.utc_offset_s).split(" (")[0],
        "type": incident_label(facts.incident_type, lang)[:35],
    }


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What a staff page says besides the incident facts: the tier, the reply code, the link."""

    tier_name: str
    kind: str  # page | reminder | instruction
    code: str | None
    link: str | None
    instruction: str | None = None  # the emergency tier's instruction (e.g. call 120)


def render_page(
    facts: IncidentFacts, page: PageFacts, lang: Lang = DEFAULT_LANGUAGE
) -> RenderedMessage:
    """A staff page in the user's language: place, type, reason, time, how to acknowledge."""
    label = incident_label(facts.incident_type, lang)
    again = l10n.t(lang, "page.again") if page.kind == "reminder" else ""
    title = l10n.t(lang, "page.title", again=again, Label=label[:1].upper() + label[1:])
    how: list[str] = []
    if page.link:
        how.append(l10n.t(lang, "page.link", link=page.link))
    if page.code:
        how.append(l10n.t(lang, "page.code", code=page.code))
    todo = f"\n{page.instruction}" if page.instruction else ""
    body = (
        l10n.t(lang, "page.body", place=place_label(facts), when=local_time(facts), label=label,
               reason=_reason_part(facts, lang), id=facts.incident_id, tier=page.tier_name)
        + todo + "\n" + "\n".join(how)
    )  # fmt: skip
    fields: dict[str, Any] = {
        **_common_fields(facts, lang),
        "tier": page.tier_name,
        "kind": page.kind,
        "ack_code": page.code,
        "ack_url": page.link,
        "instruction": page.instruction,
    }
    return RenderedMessage(title=title, body=body, fields=fields)


def page_params(
    facts: IncidentFacts, page: PageFacts, lang: Lang = DEFAULT_LANGUAGE
) -> dict[str, str]:
    """Parameters of the approved staff SMS / voice template (variables place, time, type,
    code), e.g. ``${place}于${time}（北京时间）发生${type}，无人确认。回复${code}确认。``."""
    return {**sms_params(facts, lang), "code": page.code or ""}
