"""Aliyun's RPC APIs: the SMS provider (``SendSms``) and voice calls (``SingleCallByTts``),
one signed-form POST (signature v1, HMAC-SHA1)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.notify.delivery import (
    AddressKind,
    DeliveryResult,
    Notification,
    NotifyError,
    classify_http,
    http_post,
    network_failure,
)
from gateway.notify.settings import AliyunSmsSettings, AliyunVoiceSettings


def aliyun_percent_encode(value: str) -> str:
    """POP percent-encoding: RFC 3986 unreserved kept, space as ``%20``, ``*`` as ``%2A``."""
    return urllib.parse.quote(value, safe="~")


def aliyun_signature(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """Aliyun RPC signature v1 (HMAC-SHA1) of ``params`` (``Signature`` itself excluded)."""
    enc = aliyun_percent_encode
    canonical = "&".join(
        f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    string_to_sign = f"{method}&{enc('/')}&{enc(canonical)}"
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_form(
    action: str,
    fields: Mapping[str, str],
    *,
    version: str,
    access_key_id: str,
    secret: str,
    region_id: str,
    out_id: str,
    nonce: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    """The signed form of one Aliyun RPC call: the common parameters and ``fields``, in
    name order, then ``Signature``."""
    now = (timestamp or datetime.now(UTC)).astimezone(UTC)
    form = {
        "AccessKeyId": access_key_id,
        "Action": action,
        "Format": "JSON",
        "OutId": out_id,
        "RegionId": region_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": version,
        **fields,
    }
    form = dict(sorted(form.items()))
    form["Signature"] = aliyun_signature(form, secret)
    return form


# Aliyun error codes worth retrying; every other non-OK code is permanent.
ALIYUN_TRANSIENT_CODES = frozenset(
    {
        "isp.SYSTEM_ERROR",
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "ServiceUnavailable",
        "InternalError",
    }
)


class AliyunSmsProvider:
    """Aliyun SMS ``SendSms`` (API version 2017-05-25) with the RPC HMAC-SHA1 signature.

    The endpoint is configurable so tests can point it at a local server. Only the response
    ``Code`` is ever reported: Aliyun's ``Message`` may echo the phone number.
    """

    VERSION = "2017-05-25"

    def __init__(self, settings: AliyunSmsSettings) -> None:
        self._settings = settings
        if not settings.endpoint.lower().startswith(("http://", "https://")):
            raise NotifyError("SMS endpoint must be http(s)", channel="sms")

    def request_params(
        self,
        phone: str,
        template_code: str,
        params: Mapping[str, str],
        *,
        out_id: str,
        nonce: str | None = None,
        timestamp: datetime | None = None,
    ) -> dict[str, str]:
        """The signed form parameters of one ``SendSms`` call."""
        s = self._settings
        fields = {
            "PhoneNumbers": phone,
            "SignName": s.sign_name,
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
        }
        return signed_form(
            "SendSms", fields, version=self.VERSION, access_key_id=s.access_key_id,
            secret=s.access_key_secret.get_secret_value(), region_id=s.region_id,
            out_id=out_id, nonce=nonce, timestamp=timestamp,
        )  # fmt: skip

    async def send_template(
        self, phone: str, template_code: str, params: Mapping[str, str], *, out_id: str
    ) -> DeliveryResult:
        """POST the signed form; classify by HTTP status and Aliyun's ``Code``."""
        form = self.request_params(phone, template_code, params, out_id=out_id)
        return await _aliyun_post(self._settings.endpoint, form, self._settings.timeout_s)


async def _aliyun_post(endpoint: str, form: Mapping[str, str], timeout_s: float) -> DeliveryResult:
    """POST a signed Aliyun RPC form (SMS, voice) and classify the answer."""
    body = urllib.parse.urlencode(form, quote_via=urllib.parse.quote).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    try:
        status, raw = await asyncio.to_thread(http_post, endpoint, body, headers, timeout_s)
    except (OSError, urllib.error.URLError) as exc:
        return network_failure(exc)
    return _aliyun_result(status, raw)


def _aliyun_result(status: int, raw: bytes) -> DeliveryResult:
    """Classify an Aliyun RPC answer by HTTP status and ``Code`` (never its ``Message``)."""
    try:
        answer = json.loads(raw)
        code = str(answer.get("Code", "")) if isinstance(answer, dict) else ""
    except ValueError:
        code = ""
    if code == "OK" and 200 <= status < 300:
        return DeliveryResult.delivered("aliyun OK")
    safe_code = "".join(ch for ch in code if ch.isalnum() or ch in "._-")[:60]
    if not safe_code:
        return classify_http(status)
    if code in ALIYUN_TRANSIENT_CODES or status >= 500:
        return DeliveryResult.transient(f"aliyun {safe_code}")
    return DeliveryResult.permanent(f"aliyun {safe_code}")


class AliyunVoiceNotifier:
    """Aliyun voice notification: Dyvmsapi ``SingleCallByTts`` (API version 2017-05-25).

    An RPC-style POST of a form signed like the SMS call (signature v1, HMAC-SHA1 over the
    sorted, percent-encoded parameters with the key ``<secret>&``): ``CalledNumber`` (the
    mainland number without +86), ``CalledShowNumber`` (专属模式 only), ``TtsCode`` (the
    approved text-to-speech template), ``TtsParam`` (its variables as JSON: place, time, type
    and the reply code), ``PlayTimes``, ``Volume`` and ``OutId`` (the outbox row id). Only the
    answer's ``Code`` is reported. The endpoint is configurable (tests use a local server).
    """

    VERSION = "2017-05-25"
    private = True
    address_kind: AddressKind = "phone"
    broadcast = False

    def __init__(self, settings: AliyunVoiceSettings) -> None:
        self._settings = settings
        if not settings.endpoint.lower().startswith(("http://", "https://")):
            raise NotifyError("voice endpoint must be http(s)", channel="voice")

    def request_params(
        self,
        phone: str,
        params: Mapping[str, str],
        *,
        out_id: str,
        nonce: str | None = None,
        timestamp: datetime | None = None,
    ) -> dict[str, str]:
        """The signed form parameters of one ``SingleCallByTts`` call."""
        s = self._settings
        fields = {
            "CalledNumber": phone[3:] if phone.startswith("+86") else phone.lstrip("+"),
            "PlayTimes": str(s.play_times),
            "TtsCode": s.tts_code,
            "TtsParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "Volume": str(s.volume),
        }
        if s.called_show_number:
            fields["CalledShowNumber"] = s.called_show_number
        return signed_form(
            "SingleCallByTts", fields, version=self.VERSION, access_key_id=s.access_key_id,
            secret=s.access_key_secret.get_secret_value(), region_id=s.region_id,
            out_id=out_id, nonce=nonce, timestamp=timestamp,
        )  # fmt: skip

    async def send(self, message: Notification) -> DeliveryResult:
        """Place the call (the provider answers at once; the call itself follows)."""
        if not message.address:
            return DeliveryResult.permanent("no phone number")
        form = self.request_params(
            message.address, message.sms_params, out_id=str(message.notification_id)
        )
        return await _aliyun_post(self._settings.endpoint, form, self._settings.timeout_s)
