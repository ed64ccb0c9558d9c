"""Aliyun voice click-to-call: Dyvmsapi ``ClickToDial`` (API version 2017-05-25).

A two-leg call: Aliyun rings the staff member's phone (``CallerNumber``, showing
``CallerShowNumber``) and, once answered, the callee (``CalledNumber``, showing
``CalledShowNumber``). One RPC-style POST of a form signed like the SMS and voice
notifications (:func:`gateway.notify.aliyun.signed_form`: signature v1, HMAC-SHA1). Only
the answer's ``Code`` and ``CallId`` are kept: Aliyun's ``Message`` may echo a number. The
endpoint is configurable (tests point it at a local HTTP server).

A network error, a timeout or an HTTP 5xx is a ``failed`` placement (``network``,
``http_503``...), never an exception: the attempt is still recorded on the timeline.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
from datetime import datetime

from gateway.notify.aliyun import signed_form
from gateway.notify.delivery import http_post
from gateway.telephony.adapter import CallRequest, Channel, Placement
from gateway.telephony.phones import CallOutcome, dial_digits
from gateway.telephony.settings import AliyunCallSettings

# Codes by which Aliyun refuses the called number itself.
INVALID_NUMBER_CODES = frozenset(
    {"isv.MOBILE_NUMBER_ILLEGAL", "isv.CALLED_NUMBER_ILLEGAL", "isv.NUMBER_ILLEGAL"}
)


def _mainland(phone: str) -> str:
    digits = dial_digits(phone)
    return digits[3:] if digits.startswith("+86") else digits.lstrip("+")


def _safe(code: str) -> str:
    return "".join(ch for ch in code if ch.isalnum() or ch in "._-")[:60]


class AliyunClickToDial:
    """Places calls through Aliyun ``ClickToDial``."""

    VERSION = "2017-05-25"
    channel: Channel = "aliyun"
    needs_caller_phone = True

    def __init__(self, settings: AliyunCallSettings) -> None:
        self._settings = settings

    def request_params(
        self, request: CallRequest, *, nonce: str | None = None, timestamp: datetime | None = None
    ) -> dict[str, str]:
        """The signed form of one ``ClickToDial`` call."""
        s = self._settings
        caller = request.caller_phone or s.caller_number or ""
        fields = {
            "CallerShowNumber": s.caller_show_number,
            "CallerNumber": _mainland(caller),
            "CalledShowNumber": s.called_show_number,
            "CalledNumber": _mainland(request.callee_phone),
            "RecordFlag": "true" if s.record else "false",
            "SessionTimeout": str(s.session_timeout_s),
        }
        return signed_form(
            "ClickToDial", fields, version=self.VERSION, access_key_id=s.access_key_id,
            secret=s.access_key_secret.get_secret_value(), region_id=s.region_id,
            out_id=request.out_id, nonce=nonce, timestamp=timestamp,
        )  # fmt: skip

    def place(self, request: CallRequest) -> Placement:
        """POST the signed form and classify the answer (never raises on the provider)."""
        form = self.request_params(request)
        body = urllib.parse.urlencode(form, quote_via=urllib.parse.quote).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        try:
            s = self._settings
            status, raw = http_post(s.endpoint, body, headers, s.timeout_s)
        except (OSError, urllib.error.URLError):
            return Placement("failed", detail="network")
        return classify(status, raw)


def classify(status: int, raw: bytes) -> Placement:
    """An Aliyun answer as a placement: OK with a CallId is placed; a refused number is
    failed with the outcome invalid_number; anything else failed with a safe code."""
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    code = _safe(str(answer.get("Code", "")))
    call_id = str(answer.get("CallId") or "")[:128] or None
    if 200 <= status < 300 and code == "OK":
        return Placement("placed", detail="aliyun OK", provider_call_id=call_id)
    if code in INVALID_NUMBER_CODES:
        return Placement("failed", detail=f"aliyun {code}", outcome=CallOutcome.INVALID_NUMBER)
    if code and status < 500:
        return Placement("failed", detail=f"aliyun {code}")
    return Placement("failed", detail=f"http_{status}")
