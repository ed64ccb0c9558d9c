"""Settings of staff paging off-console (``[paging]``): acknowledgement links and SMS replies.

* ``public_base_url`` — where staff phones reach the gateway's API (the ack link is
  ``<public_base_url>/ack/<token>``); without it pages carry the reply code only.
* ``ack_secret`` (secret, ≥ 32 characters) — HMAC key of the one-time links; without it
  pages carry no link.
* ``ack_ttl_s`` — how long a page's link and reply code stay valid.
* ``inbound_sms_secret`` (secret) — the shared key the SMS provider's forwarder signs inbound
  replies with (``X-Safehome-Signature: sha256=<HMAC of "<timestamp>.<body>">``); without it
  the inbound endpoint answers 503.
* ``inbound_max_skew_s`` — an inbound reply whose timestamp is further off is refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_ACK_SECRET = 32


class PagingSettings(BaseModel):
    """Staff paging: links, reply codes and the inbound SMS endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # page staff channels through the outbox (staff_pages are always kept)
    public_base_url: str | None = Field(None, max_length=200)
    ack_secret: SecretStr | None = None
    ack_ttl_s: float = Field(43200.0, gt=0, le=7 * 86400)
    inbound_sms_secret: SecretStr | None = None
    inbound_max_skew_s: float = Field(300.0, gt=0, le=3600)

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("public_base_url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("ack_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ACK_SECRET:
            raise ValueError(f"ack_secret must have at least {MIN_ACK_SECRET} characters")
        return value
