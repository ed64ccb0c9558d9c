"""Pure helpers of page acknowledgement: signed one-time links, reply codes, phone numbers.

A link token is a JWT (HS256, PyJWT) signed with ``paging.ack_secret``, audience
``safehome-page-ack``, carrying the page id (``pid``), the paged user (``sub``) and the
expiry (``exp``). The signature makes it unforgeable; single use is recorded in the database
(``staff_page_acks``), not in the token. No I/O, no clock reads except where passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import jwt

from gateway.errors import InvalidError

AUDIENCE = "safehome-page-ack"
CODE_DIGITS = 6
_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


class AckResult(StrEnum):
    """What an acknowledgement attempt came to (also the metric's ``result`` label)."""

    ACKNOWLEDGED = "acknowledged"  # this message acknowledged the incident
    ALREADY = "already_acknowledged"  # someone (or something) took the incident before
    USED = "used"  # the link or code of this page was used already
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # bad signature, no such page, wrong sender, no code in the text
    NO_USER = "user_inactive"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a valid link names."""

    page_id: int
    user_id: str
    expires_at: int  # unix seconds


class LinkError(InvalidError):
    """The token is not a valid link; ``result`` says why (expired or unknown)."""

    def __init__(self, result: AckResult) -> None:
        super().__init__(result.value)
        self.result = result


def sign_link(secret: str, page_id: int, user_id: str, expires_at: int) -> str:
    """The token of the one-time link of page ``page_id`` for ``user_id``."""
    claims = {"pid": page_id, "sub": user_id, "exp": expires_at, "aud": AUDIENCE}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_link(secret: str, token: str, now: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; :class:`LinkError` otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE,
            options={"require": ["exp", "sub", "pid", "aud"], "verify_exp": False},
        )  # fmt: skip
    except jwt.PyJWTError:
        raise LinkError(AckResult.UNKNOWN) from None
    page_id, user_id, exp = claims.get("pid"), claims.get("sub"), claims.get("exp")
    if not isinstance(page_id, int) or not isinstance(user_id, str) or not isinstance(exp, int):
        raise LinkError(AckResult.UNKNOWN)
    if now >= exp:  # checked here, with the caller's clock (tests pass their own time)
        raise LinkError(AckResult.EXPIRED)
    return LinkClaims(page_id, user_id, exp)


def new_code() -> str:
    """A random six-digit reply code."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def find_code(text: str) -> str | None:
    """The six-digit code in an SMS reply (``"123456"``, ``"确认 123456"``), if exactly one."""
    found = _CODE.findall(text)
    return found[0] if len(set(found)) == 1 else None


_PHONE_JUNK = re.compile(r"[\s().-]")


def normalise_phone(raw: str) -> str:
    """A phone number in E.164 form; mainland mobile numbers get ``+86``.

    ``138 0000 0000``, ``+86 138-0000-0000``, ``008613800000000`` and ``8613800000000`` all
    become ``+8613800000000``. Raises :class:`ValueError` for anything else.
    """
    text = _PHONE_JUNK.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if re.fullmatch(r"1\d{10}", text):
        text = "+86" + text
    elif re.fullmatch(r"861\d{10}", text):
        text = "+" + text
    if not re.fullmatch(r"\+[1-9]\d{6,14}", text):
        raise ValueError("not a phone number (E.164, e.g. +8613800000000)")
    return text


def national_number(e164: str) -> str:
    """What Chinese SMS/voice APIs expect: the mainland number without ``+86``."""
    return e164[3:] if e164.startswith("+86") else e164.lstrip("+")


def inbound_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def inbound_signature_ok(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, max_skew_s: float
) -> bool:
    """Whether an inbound SMS forward is genuine and fresh."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > max_skew_s:
        return False
    return hmac.compare_digest(inbound_signature(secret, timestamp, body), signature)


def link_builder(base_url: str | None, secret: str | None) -> Callable[[int, str, int], str] | None:
    """``(page id, user id, expiry) -> <base_url>/ack/<token>``; None without a base or key."""
    if not base_url or not secret:
        return None
    base = base_url.rstrip("/")

    def build(page_id: int, user_id: str, expires_at: int) -> str:
        return f"{base}/ack/{sign_link(secret, page_id, user_id, expires_at)}"

    return build
