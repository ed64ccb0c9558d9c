"""The ``[platform]`` settings section: where and when the monthly push goes.

The shared secret is a ``SecretStr``: from ``SAFEHOME_PLATFORM__SECRET`` or a file named by
``SAFEHOME_PLATFORM__SECRET_FILE``, never from TOML.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class PlatformSettings(BaseModel):
    """The signed monthly push to the provincial/municipal platform (docs/platform-push.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    url: str | None = None  # the platform's receiving endpoint (http or https)
    secret: SecretStr | None = None  # HMAC-SHA256 key shared with the platform
    source_id: str = Field("safehome", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")  # who pushes
    # Schedule: the previous month is pushed from this local day and hour on, in the zone
    # utc_offset_s (China: UTC+8). Checked every schedule_check_s; queuing is idempotent.
    push_day: int = Field(1, ge=1, le=28)
    push_hour: int = Field(2, ge=0, le=23)
    utc_offset_s: int = Field(28800, ge=-50400, le=50400)
    schedule_check_s: float = Field(300.0, gt=0)
    sites: list[str] | None = None  # None: every site
    # Delivery: one attempt's HTTP timeout, retries with backoff until max_attempts or
    # deadline_s after queuing, then the push is failed (kept in the outbox, audited).
    timeout_s: float = Field(10.0, gt=0, le=300)
    max_attempts: int = Field(12, ge=1, le=100)
    deadline_s: float = Field(7 * 86400.0, gt=0)
    backoff_base_s: float = Field(60.0, ge=0)
    backoff_max_s: float = Field(3600.0, ge=0)
    backoff_jitter: float = Field(0.2, ge=0, le=1)
    poll_interval_s: float = Field(5.0, gt=0)  # the message worker's poll (all kinds)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("platform.url must be http(s)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> PlatformSettings:
        if self.enabled and (self.url is None or self.secret is None):
            raise ValueError("platform.enabled needs platform.url and platform.secret")
        return self
