"""Channel adapters: webhook, SMTP e-mail, group bots (apprise), template SMS, Aliyun voice
calls and WeChat service-account template messages.

Every adapter implements :class:`Notifier`: ``await send(notification)`` returns a
:class:`DeliveryResult` (delivered, transient failure, permanent failure) with a short
detail that never contains personal data (no addresses, phone numbers, names or response
bodies). Adapters never raise for delivery problems; only misconfiguration raises
:class:`NotifyError`, when the adapter is built.

One module per channel kind (:mod:`~gateway.notify.webhook`, :mod:`~gateway.notify.mail`,
:mod:`~gateway.notify.bots`, :mod:`~gateway.notify.sms`, :mod:`~gateway.notify.aliyun`,
:mod:`~gateway.notify.wechat`) over what they share (:mod:`gateway.notify.delivery`); this
module builds the configured ones (:func:`build_notifiers`) and names them all.
"""

from __future__ import annotations

from gateway.notify.aliyun import (
    ALIYUN_TRANSIENT_CODES,
    AliyunSmsProvider,
    AliyunVoiceNotifier,
    aliyun_percent_encode,
    aliyun_signature,
)
from gateway.notify.bots import AppriseNotifier
from gateway.notify.delivery import (
    AddressKind,
    DeliveryResult,
    Notification,
    Notifier,
    NotifyError,
    Outcome,
    classify_http,
)
from gateway.notify.mail import EmailNotifier
from gateway.notify.settings import NotifySettings
from gateway.notify.sms import SmsNotifier, SmsProvider
from gateway.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    webhook_signature,
)
from gateway.notify.wechat import (
    WECHAT_TOKEN_ERRORS,
    WECHAT_TRANSIENT_ERRORS,
    WechatTemplateNotifier,
)

__all__ = [
    "ALIYUN_TRANSIENT_CODES",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WECHAT_TOKEN_ERRORS",
    "WECHAT_TRANSIENT_ERRORS",
    "AddressKind",
    "AliyunSmsProvider",
    "AliyunVoiceNotifier",
    "AppriseNotifier",
    "DeliveryResult",
    "EmailNotifier",
    "Notification",
    "Notifier",
    "NotifyError",
    "Outcome",
    "SmsNotifier",
    "SmsProvider",
    "WebhookNotifier",
    "WechatTemplateNotifier",
    "aliyun_percent_encode",
    "aliyun_signature",
    "build_notifiers",
    "classify_http",
    "webhook_signature",
]


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
