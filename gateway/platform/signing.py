"""The push's signature: ``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``),
the same scheme as the notification webhooks (:mod:`gateway.notify.webhook`)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Safehome-Signature"
TIMESTAMP_HEADER = "X-Safehome-Timestamp"
IDEMPOTENCY_HEADER = "X-Safehome-Idempotency-Key"
DELIVERY_HEADER = "X-Safehome-Delivery"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(``secret``, ``timestamp + "." + body``)."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float,
    max_skew_s: float,
) -> str | None:
    """None when the signature is valid and the timestamp fresh, else the reason."""
    if not timestamp or not signature:
        return "missing signature"
    try:
        ts = int(timestamp)
    except ValueError:
        return "bad timestamp"
    if abs(now - ts) > max_skew_s:
        return "stale timestamp"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "bad signature"
    return None
