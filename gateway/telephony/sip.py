"""The desk-phone adapter: the browser opens a ``tel:`` or ``sip:`` URI (a SIP desk phone,
a softphone registered as the handler); the server only records the attempt."""

from __future__ import annotations

from gateway.telephony.adapter import CallRequest, Channel, Placement
from gateway.telephony.phones import dial_digits
from gateway.telephony.settings import SipSettings


class SipLinkAdapter:
    """``tel:<prefix><number>`` or ``sip:<prefix><number>@<domain>``."""

    channel: Channel = "sip"
    needs_caller_phone = False

    def __init__(self, settings: SipSettings) -> None:
        self._settings = settings

    def uri(self, phone: str) -> str:
        """The URI the desk phone dials."""
        s = self._settings
        number = s.dial_prefix + dial_digits(phone)
        if s.scheme == "sip":
            return f"sip:{number}@{s.domain}"
        return f"tel:{number}"

    def place(self, request: CallRequest) -> Placement:
        """Nothing to send: the call is handed to the desk phone by the browser."""
        return Placement("placed", detail="desk_phone", dial_uri=self.uri(request.callee_phone))
