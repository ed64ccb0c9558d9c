"""Settings of family notifications (to be moved into ``gateway/settings.py`` as ``notify``).

Channel names are the strings stored in ``contacts.channels`` (ordered preferences):

* ``email`` — SMTP to ``contacts.email`` (needs :attr:`NotifySettings.smtp`);
* ``sms`` — an approved SMS template to ``contacts.phone`` (needs :attr:`NotifySettings.sms`);
* ``webhook`` or ``webhook:<name>`` — a configured endpoint in :attr:`NotifySettings.webhooks`;
* ``wecom`` / ``dingtalk`` / ``feishu`` / ``bot`` (optionally ``:<name>``) — a group bot,
  an apprise URL in :attr:`NotifySettings.bots` (``wecombot://``, ``dingtalk://``,
  ``feishu://`` or ``lark://``; ``bot`` accepts any apprise URL);
* ``voice`` — an Aliyun text-to-speech voice call to a phone (needs :attr:`NotifySettings.voice`;
  staff paging);
* ``wechat`` — a WeChat service-account template message to ``contacts.wechat_openid``
  (needs :attr:`NotifySettings.wechat`).

Secrets (SMTP password, webhook signing secrets, bot URLs which embed their keys, the SMS
access key secret) are ``SecretStr`` and must come from the environment, never from TOML.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

CHANNEL_NAME = re.compile(
    r"^(email|sms|voice|wechat|webhook|wecom|dingtalk|feishu|bot)(:[A-Za-z0-9_-]{1,32})?$"
)
BOT_SCHEMES: dict[str, frozenset[str]] = {
    "wecom": frozenset({"wecombot"}),
    "dingtalk": frozenset({"dingtalk"}),
    "feishu": frozenset({"feishu", "lark"}),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookEndpoint(_Section):
    """A generic HTTP endpoint receiving JSON notifications (e.g. a family app's backend)."""

    url: SecretStr  # may embed a token
    secret: SecretStr | None = None  # HMAC-SHA256 signing key; no signature header when None
    private: bool = False  # True only if it delivers one-to-one to the contact (names allowed)
    timeout_s: float = Field(10.0, gt=0)


class SmtpSettings(_Section):
    """Outgoing mail server."""

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    from_address: str = "safehome@localhost"
    starttls: bool = False  # upgrade with STARTTLS (certificate verified)
    implicit_tls: bool = False  # SMTPS (usually port 465); exclusive with starttls
    ca_file: str | None = None  # a private CA bundle; the system CAs otherwise
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpSettings:
        if self.starttls and self.implicit_tls:
            raise ValueError("choose starttls or implicit_tls, not both")
        return self


class AliyunSmsSettings(_Section):
    """Aliyun SMS (dysmsapi ``SendSms``, RPC signature v1 HMAC-SHA1)."""

    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region_id: str = "cn-hangzhou"
    access_key_id: str
    access_key_secret: SecretStr
    sign_name: str  # the approved signature (签名), e.g. 安居守护
    template_code: str  # the approved incident template, e.g. SMS_123456789
    # The approved staff page template (variables place, time, type, code); unset: the
    # incident template's code is used for staff pages too.
    staff_template_code: str | None = None
    timeout_s: float = Field(10.0, gt=0)


class AliyunVoiceSettings(_Section):
    """Aliyun voice notification (Dyvmsapi ``SingleCallByTts``, RPC signature v1 HMAC-SHA1)."""

    endpoint: str = "https://dyvmsapi.aliyuncs.com/"
    region_id: str = "cn-hangzhou"
    access_key_id: str
    access_key_secret: SecretStr
    called_show_number: str | None = None  # the display number (专属模式); None: public mode
    tts_code: str  # the approved text-to-speech template, e.g. TTS_123456789
    play_times: int = Field(2, ge=1, le=3)
    volume: int = Field(100, ge=0, le=100)
    timeout_s: float = Field(10.0, gt=0)


class WechatTemplateSettings(_Section):
    """WeChat service account (公众号) template messages to family contacts' openids."""

    api_base: str = "https://api.weixin.qq.com"
    app_id: str
    app_secret: SecretStr
    template_id: str
    # Template data keys for the facts (the approved template's own keywords).
    place_key: str = "thing1"
    type_key: str = "thing2"
    time_key: str = "time3"
    detail_url: str | None = None  # the page opened from the message (e.g. the family view)
    timeout_s: float = Field(10.0, gt=0)


class NotifySettings(_Section):
    """Outbox worker and channel configuration (defaults suit production)."""

    enabled: bool = True
    poll_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(20, ge=1, le=1000)
    concurrency: int = Field(8, ge=1, le=256)
    # Attempts per channel before it counts as failed and the contact's next channel is used.
    max_attempts: int = Field(3, ge=1, le=20)
    # ... or when a retry would start later than this after the row was queued: a failing
    # channel must hand over to the next one quickly, never stall the contact's chain.
    channel_deadline_s: float = Field(60.0, gt=0)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    backoff_jitter: float = Field(0.2, ge=0, le=1)  # ± fraction of the delay
    # A row claimed by a worker that died is reclaimed after this long (at-least-once).
    lease_s: float = Field(120.0, gt=0)
    webhooks: dict[str, WebhookEndpoint] = Field(default_factory=dict)
    bots: dict[str, SecretStr] = Field(default_factory=dict)
    smtp: SmtpSettings | None = None
    sms: AliyunSmsSettings | None = None
    voice: AliyunVoiceSettings | None = None
    wechat: WechatTemplateSettings | None = None

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookEndpoint]) -> dict[str, WebhookEndpoint]:
        for name in value:
            if not CHANNEL_NAME.match(name) or name.split(":")[0] != "webhook":
                raise ValueError(f"webhook channel {name!r} must be 'webhook' or 'webhook:<name>'")
        return value

    @field_validator("bots")
    @classmethod
    def _bot_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, url in value.items():
            kind = name.split(":")[0]
            if not CHANNEL_NAME.match(name) or kind not in {*BOT_SCHEMES, "bot"}:
                raise ValueError(f"bot channel {name!r} must be wecom|dingtalk|feishu|bot[:name]")
            scheme = url.get_secret_value().split("://", 1)[0].lower()
            if kind in BOT_SCHEMES and scheme not in BOT_SCHEMES[kind]:
                # Never echo the URL: it embeds the bot's key.
                raise ValueError(f"bot channel {name!r} needs a {sorted(BOT_SCHEMES[kind])} URL")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> NotifySettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be >= backoff_base_s")
        return self
