"""The WeChat channel: service-account (公众号) template messages to a contact's openid."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
from collections.abc import Mapping
from typing import Any

from gateway.notify.delivery import (
    AddressKind,
    DeliveryResult,
    Notification,
    NotifyError,
    classify_http,
    http_get,
    http_post,
    network_failure,
)
from gateway.notify.settings import WechatTemplateSettings

# WeChat errcodes: the access token is invalid or expired (refresh once and retry)...
WECHAT_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# ... and errors worth retrying later (system busy, API frequency limits).
WECHAT_TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45047})


class WechatTemplateNotifier:
    """WeChat service-account (公众号) template message to a family contact's openid.

    ``GET <api_base>/cgi-bin/token?grant_type=client_credential&appid=…&secret=…`` gives an
    access token, cached until ``expires_in`` (less a minute); then ``POST
    <api_base>/cgi-bin/message/template/send?access_token=…`` with ``{"touser": openid,
    "template_id", "url", "data": {key: {"value": …}}}``. ``errcode`` 0 is delivered; a token
    error (40001, 40014, 42001) refreshes the token once and retries; -1 and frequency limits
    are transient; anything else (e.g. 43004 the user unfollowed) is permanent. The template
    carries place, type and time only (a one-to-one channel, but templates are shown on the
    lock screen): no names.
    """

    private = False
    address_kind: AddressKind = "openid"
    broadcast = False

    def __init__(self, settings: WechatTemplateSettings) -> None:
        self._settings = settings
        if not settings.api_base.lower().startswith(("http://", "https://")):
            raise NotifyError("wechat api_base must be http(s)", channel="wechat")
        self._base = settings.api_base.rstrip("/")
        self._token: str | None = None
        self._token_until = 0.0
        self._lock = asyncio.Lock()

    async def _access_token(self, stale: str | None = None) -> str | DeliveryResult:
        """The cached token, or a new one when none is valid or ``stale`` (a token WeChat
        refused) is still the cached one (concurrent senders refresh once, not each)."""
        async with self._lock:
            fresh = self._token and time.monotonic() < self._token_until
            if fresh and self._token != stale:
                assert self._token is not None
                return self._token
            s = self._settings
            query = urllib.parse.urlencode({
                "grant_type": "client_credential", "appid": s.app_id,
                "secret": s.app_secret.get_secret_value(),
            })  # fmt: skip
            try:
                status, raw = await asyncio.to_thread(
                    http_get, f"{self._base}/cgi-bin/token?{query}", s.timeout_s
                )
            except (OSError, urllib.error.URLError) as exc:
                return network_failure(exc)
            answer = _json_object(raw)
            token = answer.get("access_token")
            if status != 200 or not isinstance(token, str) or not token:
                errcode = _errcode(answer)
                if status >= 500 or errcode in WECHAT_TRANSIENT_ERRORS:
                    return DeliveryResult.transient(f"wechat token errcode {errcode}")
                return DeliveryResult.permanent(f"wechat token errcode {errcode} (http {status})")
            expires_in = answer.get("expires_in", 7200)
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 7200.0
            self._token = token
            self._token_until = time.monotonic() + max(0.0, lifetime - 60.0)
            return token

    def payload(self, message: Notification) -> dict[str, Any]:
        """The template message document for ``message``."""
        s = self._settings
        fields = message.message.fields
        data = {
            s.place_key: {"value": str(message.sms_params.get("place", "-"))[:20]},
            s.type_key: {"value": str(message.sms_params.get("type", ""))[:20]},
            # WeChat checks a time keyword's format: the bare site time, without the zone
            s.time_key: {"value": str(fields.get("local_time", "")).split(" (")[0]},
        }
        doc: dict[str, Any] = {
            "touser": message.address, "template_id": s.template_id, "data": data,
        }  # fmt: skip
        if s.detail_url:
            doc["url"] = s.detail_url
        return doc

    async def send(self, message: Notification) -> DeliveryResult:
        """Send the template message (refreshing an expired token once)."""
        if not message.address:
            return DeliveryResult.permanent("no wechat openid")
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        stale: str | None = None
        for refresh in (False, True):
            token = await self._access_token(stale)
            if isinstance(token, DeliveryResult):
                return token
            url = (f"{self._base}/cgi-bin/message/template/send?"
                   + urllib.parse.urlencode({"access_token": token}))  # fmt: skip
            try:
                status, raw = await asyncio.to_thread(
                    http_post, url, body, headers, self._settings.timeout_s
                )
            except (OSError, urllib.error.URLError) as exc:
                return network_failure(exc)
            if status != 200:
                return classify_http(status)
            errcode = _errcode(_json_object(raw))
            if errcode == 0:
                return DeliveryResult.delivered("wechat ok")
            if errcode in WECHAT_TOKEN_ERRORS and not refresh:
                stale = token
                continue
            if errcode in WECHAT_TRANSIENT_ERRORS:
                return DeliveryResult.transient(f"wechat errcode {errcode}")
            return DeliveryResult.permanent(f"wechat errcode {errcode}")
        return DeliveryResult.transient("wechat token refused after refresh")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _errcode(answer: Mapping[str, Any]) -> int | None:
    code = answer.get("errcode")
    return code if isinstance(code, int) else None
