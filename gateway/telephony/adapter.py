"""The telephony adapter protocol: one call from a staff member to a callee.

An adapter places the call and answers at once with a :class:`Placement`: ``placed`` (the
provider accepted it, or the browser is to open ``dial_uri``) or ``failed`` with a short,
loggable ``detail`` code (never a provider message, which may echo the number). What came
of the call (answered, no answer, busy) is recorded afterwards by staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.telephony.phones import CallOutcome

Channel = Literal["aliyun", "sip"]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One call: ``callee_phone`` is dialled; ``caller_phone`` (the staff member's own phone
    or the desk line, two-leg adapters only) rings first. ``out_id`` is the reference the
    provider echoes (no personal data)."""

    callee_phone: str
    caller_phone: str | None
    out_id: str


@dataclass(frozen=True, slots=True)
class Placement:
    """What the adapter did: ``status`` placed or failed, a safe ``detail`` code, the
    provider's call id, the URI the browser opens (sip adapter), and an outcome when the
    adapter already knows it (the provider refused the number: invalid_number)."""

    status: Literal["placed", "failed"]
    detail: str | None = None
    provider_call_id: str | None = None
    dial_uri: str | None = None
    outcome: CallOutcome | None = None


class TelephonyAdapter(Protocol):
    """Places calls (blocking, bounded by the adapter's own timeout)."""

    @property
    def channel(self) -> Channel: ...

    @property
    def needs_caller_phone(self) -> bool: ...

    def place(self, request: CallRequest) -> Placement: ...
