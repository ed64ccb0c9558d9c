"""What every channel adapter shares: the message, the result of one attempt, the
:class:`Notifier` protocol, and plain HTTP helpers (no redirects, bounded reads).

An adapter never raises for a delivery problem: ``send`` returns a :class:`DeliveryResult`
(delivered, transient failure, permanent failure) with a short detail that never contains
personal data (no addresses, phone numbers, names or response bodies). Only misconfiguration
raises :class:`NotifyError`, when the adapter is built.
"""

from __future__ import annotations

import enum
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.errors import InvalidError
from gateway.notify.messages import RenderedMessage

AddressKind = Literal["email", "phone", "openid"] | None
_TRANSIENT_HTTP = frozenset({408, 425, 429})


class NotifyError(InvalidError):
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


def http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, bytes]:
    """POST synchronously; return (status, body). HTTP errors return their status."""
    return _http(url, timeout_s, data=body, headers=headers, method="POST")


def http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    """GET synchronously; return (status, body). HTTP errors return their status."""
    return _http(url, timeout_s, data=None, headers={}, method="GET")


def _http(
    url: str, timeout_s: float, *, data: bytes | None, headers: Mapping[str, str], method: str
) -> tuple[int, bytes]:
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("only http(s) URLs are allowed")
    request = urllib.request.Request(url, data=data, headers=dict(headers), method=method)  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(65536)


def network_failure(exc: BaseException) -> DeliveryResult:
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
