"""Channel adapters: webhook, SMTP e-mail, group bots (apprise), template SMS, Aliyun voice
calls and WeChat service-account template messages.

Every adapter implements :class:`Notifier`: ``await send(notification)`` returns a
:class:`DeliveryResult` (delivered, transient failure, permanent failure) with a short
detail that never contains personal data (no addresses, phone numbers, names or response
bodies). Adapters never raise for delivery problems; only misconfiguration raises
:class:`NotifyError`, when the adapter is built.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import apprise

from gateway.notify.messages import RenderedMessage
from gateway.notify.settings import (
    AliyunSmsSettings,
    AliyunVoiceSettings,
    NotifySettings,
    SmtpSettings,
    WebhookEndpoint,
    WechatTemplateSettings,
)

AddressKind = Literal["email", "phone", "openid"] | None
SIGNATURE_HEADER = "X-Safehome-Signature"
TIMESTAMP_HEADER = "X-Safehome-Timestamp"
DELIVERY_HEADER = "X-Safehome-Delivery"
_TRANSIENT_HTTP = frozenset({408, 425, 429})


class NotifyError(Exception):
    """A channel is misconfigured (raised when building adapters, never when sending)."""

    def __init__(self, message: str, *, channel: str | None = None) -> None:
        super().__init__(message)
        self.channel = channel


class Outcome(enum.Enum):
    """Result class of one delivery attempt."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"  # worth retrying on the same channel (timeouts, 5xx, throttling)
    PERMANENT = "permanent"  # retrying will not help: move on to the next channel


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Outcome of one attempt plus a short detail that is safe to log and store."""

    outcome: Outcome
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the message was accepted by the channel."""
        return self.outcome is Outcome.DELIVERED

    @classmethod
    def delivered(cls, detail: str = "") -> DeliveryResult:
        """A successful delivery."""
        return cls(Outcome.DELIVERED, detail[:200])

    @classmethod
    def transient(cls, detail: str) -> DeliveryResult:
        """A failure worth retrying."""
        return cls(Outcome.TRANSIENT, detail[:200])

    @classmethod
    def permanent(cls, detail: str) -> DeliveryResult:
        """A failure that retrying will not fix."""
        return cls(Outcome.PERMANENT, detail[:200])


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one contact on one channel.

    ``address`` (an e-mail address or phone number) is personal data: it is excluded from
    ``repr`` and must never be logged.
    """

    notification_id: int  # the outbox row id: an idempotency key for receivers
    incident_id: int
    contact_id: str | None  # None for a staff page
    channel: str
    message: RenderedMessage
    sms_params: Mapping[str, str] = field(default_factory=dict)
    address: str | None = field(default=None, repr=False)
    recipient_kind: str = "contact"  # contact | staff
    user_id: str | None = None  # the paged staff user (staff pages)
    page_id: int | None = None  # the staff_pages row (staff pages)


class Notifier(Protocol):
    """A delivery channel."""

    @property
    def private(self) -> bool:
        """True when the channel reaches one person only (names may be included)."""
        ...

    @property
    def address_kind(self) -> AddressKind:
        """Which contact address the channel needs (``None``: the endpoint is configured)."""
        ...

    @property
    def broadcast(self) -> bool:
        """True when one post reaches a whole group: an incident is posted there once."""
        ...

    async def send(self, message: Notification) -> DeliveryResult:
        """Deliver ``message``; never raises for delivery failures."""
        ...


# --------------------------------------------------------------------------- HTTP helpers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as an error: the endpoint is misconfigured


_OPENER = urllib.request.build_opener(_NoRedirect())


def _http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """POST synchronously; return (status, body). HTTP errors return their status."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("only http(s) URLs are allowed")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(65536)


def _http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    """GET synchronously; return (status, body). HTTP errors return their status."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("only http(s) URLs are allowed")
    request = urllib.request.Request(url, method="GET")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(65536)


def _network_failure(exc: BaseException) -> DeliveryResult:
    """Classify a network exception as transient with a safe detail."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryResult.transient("timeout")
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            return DeliveryResult.transient("timeout")
        return DeliveryResult.transient(f"network error: {type(reason).__name__}")
    return DeliveryResult.transient(f"network error: {type(exc).__name__}")


def classify_http(status: int) -> DeliveryResult:
    """2xx delivered; 408/425/429/5xx transient; anything else (3xx, 4xx) permanent."""
    if 200 <= status < 300:
        return DeliveryResult.delivered(f"http {status}")
    if status >= 500 or status in _TRANSIENT_HTTP:
        return DeliveryResult.transient(f"http {status}")
    return DeliveryResult.permanent(f"http {status}")


# --------------------------------------------------------------------------- webhook


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier:
    """POST a JSON document to a configured endpoint, optionally HMAC-SHA256 signed.

    Headers: ``X-Safehome-Delivery`` (the notification id, for de-duplication: delivery is
    at-least-once), ``X-Safehome-Timestamp`` (unix seconds) and, with a secret,
    ``X-Safehome-Signature: sha256=<hex HMAC of "<timestamp>.<body>">``.
    """

    address_kind: AddressKind = None
    broadcast = False  # the document names the contact: one per contact

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        self._endpoint = endpoint
        url = endpoint.url.get_secret_value()
        if not url.lower().startswith(("http://", "https://")):
            raise NotifyError("webhook URL must be http(s)")
        self._url = url

    @property
    def private(self) -> bool:
        """As configured: only a one-to-one endpoint may receive names."""
        return self._endpoint.private

    def payload(self, message: Notification) -> dict[str, Any]:
        """The JSON document posted for ``message``."""
        doc: dict[str, Any] = {
            "event": "incident.notification",
            "notification_id": message.notification_id,
            "incident_id": message.incident_id,
            "contact_id": message.contact_id,
            "channel": message.channel,
            "title": message.message.title,
            "body": message.message.body,
            "fields": message.message.fields,
        }
        if message.recipient_kind == "staff":  # a page for one staff user (ids only)
            doc |= {"event": "staff.page", "user_id": message.user_id, "page_id": message.page_id}
        return doc

    async def send(self, message: Notification) -> DeliveryResult:
        """POST the JSON document; classify the HTTP status."""
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "safehome-guardian",
            DELIVERY_HEADER: str(message.notification_id),
            TIMESTAMP_HEADER: timestamp,
        }
        if self._endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = webhook_signature(
                self._endpoint.secret.get_secret_value(), timestamp, body
            )
        try:
            status, _ = await asyncio.to_thread(
                _http_post, self._url, body, headers, self._endpoint.timeout_s
            )
        except (OSError, urllib.error.URLError) as exc:
            return _network_failure(exc)
        return classify_http(status)


# --------------------------------------------------------------------------- e-mail


class EmailNotifier:
    """Plain-text e-mail through SMTP (stdlib ``smtplib`` in a thread), STARTTLS optional."""

    private = True
    address_kind: AddressKind = "email"
    broadcast = False

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def build(self, message: Notification) -> EmailMessage:
        """The e-mail for ``message`` (the recipient is the contact's address)."""
        if message.address is None:
            raise NotifyError("e-mail needs an address", channel=message.channel)
        mail = EmailMessage()
        mail["From"] = self._settings.from_address
        mail["To"] = message.address
        mail["Subject"] = message.message.title
        mail["Message-ID"] = f"<notification-{message.notification_id}@safehome>"
        mail.set_content(message.message.body)
        return mail

    def _send_sync(self, mail: EmailMessage) -> None:
        s = self._settings
        # smtplib's own default context does not verify certificates: always pass ours.
        context = ssl.create_default_context(cafile=s.ca_file)
        smtp = (
            smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=context)
            if s.implicit_tls
            else smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        )
        with smtp:
            if s.starttls:
                smtp.starttls(context=context)
            if s.username and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
            smtp.send_message(mail)

    async def send(self, message: Notification) -> DeliveryResult:
        """Send the mail; 5xx replies are permanent, 4xx and network errors transient."""
        if not message.address:
            return DeliveryResult.permanent("no e-mail address")
        mail = self.build(message)
        try:
            await asyncio.to_thread(self._send_sync, mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(400 <= c < 500 for c in codes):
                return DeliveryResult.transient(f"smtp recipient refused {codes[0]}")
            return DeliveryResult.permanent(f"smtp recipient refused {codes[0] if codes else ''}")
        except smtplib.SMTPResponseException as exc:
            code = int(exc.smtp_code)
            if 400 <= code < 500:
                return DeliveryResult.transient(f"smtp {code}")
            return DeliveryResult.permanent(f"smtp {code}")
        except smtplib.SMTPNotSupportedError:
            return DeliveryResult.permanent("smtp server lacks a required extension")
        except ssl.SSLCertVerificationError:
            return DeliveryResult.permanent("smtp certificate not trusted")
        except (smtplib.SMTPException, OSError) as exc:
            return _network_failure(exc)
        return DeliveryResult.delivered("smtp accepted")


# --------------------------------------------------------------------------- group bots


class AppriseNotifier:
    """A group bot (WeCom ``wecombot://``, DingTalk ``dingtalk://``, Feishu ``feishu://``).

    Group bots reach many people: messages carry the bed code, room and incident type only.
    Apprise reports success or failure without a reason, so failures count as transient
    (bounded by ``max_attempts``, after which the contact's next channel is used).
    """

    private = False
    address_kind: AddressKind = None
    broadcast = True

    def __init__(self, url: str, *, channel: str = "bot") -> None:
        self._apprise = apprise.Apprise()
        # Apprise loads its plugins on the first add(); one of them imports the deprecated
        # ``imghdr`` module. That warning is apprise's, not ours: silence it for the load.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*'imghdr' is deprecated", category=DeprecationWarning
            )
            added = self._apprise.add(url)
        # Never put the URL in the error: it embeds the bot's key.
        if not added:
            raise NotifyError("invalid apprise URL", channel=channel)
        self._lock = asyncio.Lock()

    @property
    def service(self) -> str:
        """The apprise service name (e.g. 'WeCom Bot'), for diagnostics."""
        return str(self._apprise[0].service_name)

    @property
    def plugin(self) -> str:
        """The apprise plugin class in use (e.g. ``NotifyWeComBot``), for diagnostics."""
        return type(self._apprise[0]).__name__

    async def send(self, message: Notification) -> DeliveryResult:
        """Post title and body to the bot."""
        async with self._lock:
            try:
                ok = await asyncio.to_thread(
                    self._apprise.notify, body=message.message.body, title=message.message.title
                )
            except Exception as exc:  # apprise plugins raise arbitrary errors
                return DeliveryResult.transient(f"bot error: {type(exc).__name__}")
        if ok:
            return DeliveryResult.delivered("bot accepted")
        return DeliveryResult.transient("bot delivery failed")


# --------------------------------------------------------------------------- SMS


class SmsProvider(Protocol):
    """An SMS gateway that sends approved templates (free text is not allowed in China)."""

    async def send_template(
        self, phone: str, template_code: str, params: Mapping[str, str], *, out_id: str
    ) -> DeliveryResult:
        """Send one templated SMS; never raises for delivery failures."""
        ...


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
        now = (timestamp or datetime.now(UTC)).astimezone(UTC)
        form = {
            "AccessKeyId": s.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": out_id,
            "PhoneNumbers": phone,
            "RegionId": s.region_id,
            "SignName": s.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": self.VERSION,
        }
        form["Signature"] = aliyun_signature(form, s.access_key_secret.get_secret_value())
        return form

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
        status, raw = await asyncio.to_thread(_http_post, endpoint, body, headers, timeout_s)
    except (OSError, urllib.error.URLError) as exc:
        return _network_failure(exc)
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
        now = (timestamp or datetime.now(UTC)).astimezone(UTC)
        form = {
            "AccessKeyId": s.access_key_id,
            "Action": "SingleCallByTts",
            "CalledNumber": phone[3:] if phone.startswith("+86") else phone.lstrip("+"),
            "Format": "JSON",
            "OutId": out_id,
            "PlayTimes": str(s.play_times),
            "RegionId": s.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "TtsCode": s.tts_code,
            "TtsParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "Version": self.VERSION,
            "Volume": str(s.volume),
        }
        if s.called_show_number:
            form["CalledShowNumber"] = s.called_show_number
        form["Signature"] = aliyun_signature(form, s.access_key_secret.get_secret_value())
        return form

    async def send(self, message: Notification) -> DeliveryResult:
        """Place the call (the provider answers at once; the call itself follows)."""
        if not message.address:
            return DeliveryResult.permanent("no phone number")
        form = self.request_params(
            message.address, message.sms_params, out_id=str(message.notification_id)
        )
        return await _aliyun_post(self._settings.endpoint, form, self._settings.timeout_s)


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
                    _http_get, f"{self._base}/cgi-bin/token?{query}", s.timeout_s
                )
            except (OSError, urllib.error.URLError) as exc:
                return _network_failure(exc)
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
            s.time_key: {"value": str(fields.get("local_time", ""))},
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
                    _http_post, url, body, headers, self._settings.timeout_s
                )
            except (OSError, urllib.error.URLError) as exc:
                return _network_failure(exc)
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


class SmsNotifier:
    """A template SMS to the contact's phone through an :class:`SmsProvider`."""

    private = True
    address_kind: AddressKind = "phone"
    broadcast = False

    def __init__(
        self, provider: SmsProvider, template_code: str, staff_template_code: str | None = None
    ) -> None:
        self._provider = provider
        self._template_code = template_code
        self._staff_template_code = staff_template_code or template_code

    async def send(self, message: Notification) -> DeliveryResult:
        """Send the approved template with the notification's (name-free) parameters; a
        staff page uses the staff template (with the reply code)."""
        if not message.address:
            return DeliveryResult.permanent("no phone number")
        staff = message.recipient_kind == "staff"
        phone = message.address
        if phone.startswith("+86"):  # Aliyun wants mainland numbers without the prefix
            phone = phone[3:]
        return await self._provider.send_template(
            phone,
            self._staff_template_code if staff else self._template_code,
            message.sms_params,
            out_id=str(message.notification_id),
        )


# --------------------------------------------------------------------------- registry


def build_notifiers(settings: NotifySettings) -> dict[str, Notifier]:
    """Adapters for every configured channel, keyed by channel name (see settings)."""
    out: dict[str, Notifier] = {}
    if settings.smtp is not None:
        out["email"] = EmailNotifier(settings.smtp)
    if settings.sms is not None:
        out["sms"] = SmsNotifier(
            AliyunSmsProvider(settings.sms), settings.sms.template_code,
            settings.sms.staff_template_code,
        )  # fmt: skip
    if settings.voice is not None:
        out["voice"] = AliyunVoiceNotifier(settings.voice)
    if settings.wechat is not None:
        out["wechat"] = WechatTemplateNotifier(settings.wechat)
    for name, endpoint in settings.webhooks.items():
        out[name] = WebhookNotifier(endpoint)
    for name, url in settings.bots.items():
        out[name] = AppriseNotifier(url.get_secret_value(), channel=name)
    return out
