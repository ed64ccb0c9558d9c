"""Call-centre tools (issue 11 §5): click-to-call from an incident through a telephony
adapter chosen by settings (``[telephony]``: Aliyun voice ``ClickToDial`` or a desk phone's
``tel:``/``sip:`` URI), call outcomes and incident notes on the audited timeline.

- :mod:`gateway.telephony.settings` — the settings section;
- :mod:`gateway.telephony.phones` — pure helpers (masking, vocabularies);
- :mod:`gateway.telephony.adapter` — the adapter protocol; :mod:`.aliyun`, :mod:`.sip`;
- :mod:`gateway.telephony.service` — callees, placing calls, outcomes, notes (audited).
"""

from __future__ import annotations

from gateway.telephony.adapter import TelephonyAdapter
from gateway.telephony.aliyun import AliyunClickToDial
from gateway.telephony.settings import TelephonySettings
from gateway.telephony.sip import SipLinkAdapter

__all__ = ["build_adapter"]


def build_adapter(settings: TelephonySettings) -> TelephonyAdapter | None:
    """The adapter ``settings`` choose; None when click-to-call is off."""
    if settings.adapter == "aliyun" and settings.aliyun is not None:
        return AliyunClickToDial(settings.aliyun)
    if settings.adapter == "sip":
        return SipLinkAdapter(settings.sip)
    return None
