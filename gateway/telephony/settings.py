"""The ``[telephony]`` settings section: which adapter places staff calls from the console
(click-to-call), and who may see the full numbers.

- ``adapter = "sip"`` (default): the browser opens a ``tel:`` or ``sip:`` URI on the duty
  desk's phone (softphone, SIP desk phone); the server records the attempt.
- ``adapter = "aliyun"``: the server asks Aliyun voice (Dyvmsapi ``ClickToDial``, a two-leg
  call) to ring the staff member's phone and then bridge the callee; ``[telephony.aliyun]``
  is required, its ``access_key_secret`` from the environment
  (``SAFEHOME_TELEPHONY__ALIYUN__ACCESS_KEY_SECRET`` or ``…_FILE``).
- ``adapter = "none"``: click-to-call is off (outcomes and notes still work).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

StaffRoleName = Literal["duty_staff", "supervisor", "admin"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AliyunCallSettings(_Section):
    """Aliyun voice click-to-call (Dyvmsapi ``ClickToDial``, RPC signature v1 HMAC-SHA1)."""

    endpoint: str = "https://dyvmsapi.aliyuncs.com/"
    region_id: str = "cn-hangzhou"
    access_key_id: str
    access_key_secret: SecretStr
    caller_show_number: str  # the number the staff member's phone shows (first leg)
    called_show_number: str  # the number the callee's phone shows (second leg)
    # The desk line rung first when the staff member has no phone channel of their own
    # (``safehome paging`` voice/sms channel); None: such a call is refused.
    caller_number: str | None = None
    record: bool = False  # ask Aliyun to record the conversation (RecordFlag)
    session_timeout_s: int = Field(600, ge=60, le=7200)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _http_endpoint(self) -> AliyunCallSettings:
        if not self.endpoint.lower().startswith(("http://", "https://")):
            raise ValueError("telephony.aliyun.endpoint must be an http(s) URL")
        return self


class SipSettings(_Section):
    """A desk phone or softphone opened by the browser: ``tel:<number>`` or
    ``sip:<prefix><number>@<domain>``."""

    scheme: Literal["tel", "sip"] = "tel"
    domain: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
    dial_prefix: str = Field("", pattern=r"^[0-9*#]{0,8}$")  # e.g. "9" for an outside line

    @model_validator(mode="after")
    def _sip_needs_domain(self) -> SipSettings:
        if self.scheme == "sip" and not self.domain:
            raise ValueError("telephony.sip.domain is required for scheme sip")
        return self


class TelephonySettings(_Section):
    """Click-to-call from the duty console (gateway.telephony)."""

    adapter: Literal["none", "sip", "aliyun"] = "sip"
    aliyun: AliyunCallSettings | None = None
    sip: SipSettings = SipSettings()
    # Roles that get full numbers from GET /incidents/{id}/callees (others: masked, e.g.
    # 138****1234). The sip adapter's dial URI necessarily carries the number to whoever
    # places the call.
    reveal_roles: tuple[StaffRoleName, ...] = ("supervisor", "admin")

    @field_validator("reveal_roles", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # From the environment: SAFEHOME_TELEPHONY__REVEAL_ROLES=supervisor,admin ("" = none).
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _aliyun_configured(self) -> TelephonySettings:
        if self.adapter == "aliyun" and self.aliyun is None:
            raise ValueError("telephony.adapter = 'aliyun' needs a [telephony.aliyun] section")
        return self
