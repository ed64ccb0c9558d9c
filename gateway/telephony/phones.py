"""Pure helpers of the call-centre tools: masking and normalising numbers, the outcome and
callee vocabularies, and the zh-CN sentence a call becomes on the timeline."""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "CALLEE_LABELS",
    "OUTCOME_LABELS",
    "CallOutcome",
    "CalleeKind",
    "dial_digits",
    "mask_phone",
]


class CalleeKind(StrEnum):
    """Whom staff phone about an incident."""

    RESIDENT = "resident"
    FAMILY = "family"
    COMMUNITY_WORKER = "community_worker"


class CallOutcome(StrEnum):
    """What came of a call, as staff record it (or the adapter, for an invalid number)."""

    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    INVALID_NUMBER = "invalid_number"
    REJECTED = "rejected"
    OTHER = "other"


OUTCOME_LABELS = {
    CallOutcome.CONNECTED: "接通",
    CallOutcome.NO_ANSWER: "未接通",
    CallOutcome.BUSY: "忙线",
    CallOutcome.INVALID_NUMBER: "号码无效",
    CallOutcome.REJECTED: "拒接",
    CallOutcome.OTHER: "其他",
}
CALLEE_LABELS = {
    CalleeKind.RESIDENT: "住户",
    CalleeKind.FAMILY: "家属",
    CalleeKind.COMMUNITY_WORKER: "社区工作者",
}

_NOT_DIGITS = re.compile(r"[^0-9+]")


def dial_digits(phone: str) -> str:
    """The digits to dial: spaces, dashes and brackets dropped; a leading ``+`` kept."""
    digits = _NOT_DIGITS.sub("", phone)
    return ("+" if digits.startswith("+") else "") + digits.replace("+", "")


def mask_phone(phone: str | None) -> str | None:
    """A number as the console may show it: ``138****1234`` (mainland mobile), the first
    three and last four digits of a longer number, the last two of a short one."""
    if not phone:
        return None
    digits = dial_digits(phone).lstrip("+")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 3:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)
