"""The staff channel list: each staff user's ordered paging channels (``staff_channels``).

Used by ``safehome user channel add|list|remove`` and the admin API. Every change is
audited (actor given by the caller, target ``user:<id>``) without the address: a phone
number or e-mail address is personal data and appears in no log, audit entry or topic; a
listing shows it masked (``+86138****0000``) unless asked for in full by an admin.
"""

from __future__ import annotations

from typing import Any

import psycopg

from gateway import audit
from gateway.errors import ConflictError, InvalidError, NotFoundError
from gateway.notify.settings import CHANNEL_NAME
from gateway.paging.tokens import normalise_phone
from gateway.storage import paging
from gateway.storage.paging import StaffChannel

__all__ = [
    "PHONE_KINDS",
    "STAFF_KINDS",
    "STAFF_ROLES",
    "ChannelConflictError",
    "ChannelError",
    "ChannelNotFoundError",
    "StaffChannel",
    "add_channel",
    "check_address",
    "list_channels",
    "remove_channel",
]

Conn = psycopg.Connection[Any]
STAFF_ROLES = ("duty_staff", "supervisor", "admin")
PHONE_KINDS = frozenset({"sms", "voice"})
STAFF_KINDS = frozenset({"sms", "voice", "email", "webhook", "wecom", "dingtalk", "feishu", "bot"})


class ChannelError(InvalidError):
    """A refused change; ``status`` is an HTTP-like code (400, 404, 409) kept for the callers
    that still read it (the kinds below say the same: not found, conflict)."""

    status = 400


class ChannelNotFoundError(ChannelError, NotFoundError):
    """No such user or channel."""

    status = 404


class ChannelConflictError(ChannelError, ConflictError):
    """The change clashes with the channel list (too many channels)."""

    status = 409


def check_address(channel: str, address: str | None) -> str | None:
    """The stored form of ``address`` for ``channel`` (phones normalised); ChannelError."""
    if not CHANNEL_NAME.match(channel) or channel.split(":", maxsplit=1)[0] not in STAFF_KINDS:
        raise ChannelError(
            f"unknown channel {channel!r}: sms, voice, email, webhook, wecom, dingtalk, feishu "
            "or bot (optionally :<name> of a configured endpoint or bot)"
        )
    kind = channel.split(":", maxsplit=1)[0]
    if kind in PHONE_KINDS:
        if not address:
            raise ChannelError(f"a {kind} channel needs --address (a phone number)")
        try:
            return normalise_phone(address)
        except ValueError as exc:
            raise ChannelError(str(exc)) from None
    if kind == "email":
        if not address or "@" not in address or len(address) > 254 or " " in address:
            raise ChannelError("an email channel needs --address (an e-mail address)")
        return address
    if address:
        raise ChannelError(f"a {kind} channel is a configured endpoint: it takes no address")
    return None


def _user(conn: Conn, user: str) -> str:
    found = paging.find_user(conn, user)
    if found is None:
        raise ChannelNotFoundError(f"no user {user!r}")
    user_id, role = found
    if role not in STAFF_ROLES:
        raise ChannelError(f"user {user_id} is {role}: only staff users are paged")
    return user_id


def list_channels(conn: Conn, user: str, *, revealed_to: str | None = None) -> list[StaffChannel]:
    """The channels of ``user`` (user id or sign-in name), in paging order. ``revealed_to``
    (an actor) will see the addresses unmasked: that read of personal data is audited."""
    user_id = _user(conn, user)
    if revealed_to is not None:
        audit.append(conn, revealed_to, "user.channels_revealed", f"user:{user_id}")
    return paging.channels_of(conn, user_id)


def add_channel(
    conn: Conn, user: str, channel: str, address: str | None, *, actor: str,
    position: int | None = None,
) -> StaffChannel:  # fmt: skip
    """Add a channel at ``position`` (default: last; later ones move down); audited."""
    stored = check_address(channel, address)
    with conn.transaction():
        user_id = _user(conn, user)
        paging.lock_channels(conn, user_id)
        n = paging.count_channels(conn, user_id)
        if n >= 8:
            raise ChannelConflictError("a user has at most 8 paging channels")
        pos = n if position is None else max(0, min(position, n))
        added = paging.insert_channel(conn, user_id, pos, channel, stored)
        audit.append(conn, actor, "user.channel_added", f"user:{user_id}",
                     {"channel_id": added.id, "channel": channel, "position": pos})  # fmt: skip
    return added


def remove_channel(conn: Conn, user: str, channel_id: int, *, actor: str) -> None:
    """Remove one channel (the later ones move up); audited."""
    with conn.transaction():
        user_id = _user(conn, user)
        paging.lock_channels(conn, user_id)
        removed = paging.delete_channel(conn, user_id, channel_id)
        if removed is None:
            raise ChannelNotFoundError(f"user {user_id} has no channel #{channel_id}")
        audit.append(conn, actor, "user.channel_removed", f"user:{user_id}",
                     {"channel_id": channel_id, "channel": removed})  # fmt: skip
