"""The staff channel list: each staff user's ordered paging channels (``staff_channels``).

Used by ``safehome user channel add|list|remove`` and the admin API. Every change is
audited (actor given by the caller, target ``user:<id>``) without the address: a phone
number or e-mail address is personal data and appears in no log, audit entry or topic; a
listing shows it masked (``+86138****0000``) unless asked for in full by an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from gateway import audit
from gateway.notify.settings import CHANNEL_NAME
from gateway.paging.tokens import normalise_phone

Conn = psycopg.Connection[Any]
STAFF_ROLES = ("duty_staff", "supervisor", "admin")
PHONE_KINDS = frozenset({"sms", "voice"})
STAFF_KINDS = frozenset({"sms", "voice", "email", "webhook", "wecom", "dingtalk", "feishu", "bot"})


class ChannelError(Exception):
    """A refused change; ``status`` is an HTTP-like code (400, 404, 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class StaffChannel:
    """One paging channel of a staff user (``address`` is personal data)."""

    id: int
    user_id: str
    position: int
    channel: str
    address: str | None

    def masked(self) -> str | None:
        """The address for display: the middle of a number or the mailbox name hidden."""
        if self.address is None:
            return None
        if "@" in self.address:
            local, _, domain = self.address.partition("@")
            return f"{local[:1]}***@{domain}"
        return f"{self.address[:6]}****{self.address[-4:]}"

    def as_json(self, *, reveal: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "position": self.position,
            "channel": self.channel,
            "address": self.address if reveal else self.masked(),
        }


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
    row = conn.execute(
        "SELECT user_id, role FROM users WHERE user_id = %s OR username = %s "
        "ORDER BY user_id = %s DESC LIMIT 1",
        (user, user, user),
    ).fetchone()
    if row is None:
        raise ChannelError(f"no user {user!r}", status=404)
    if row[1] not in STAFF_ROLES:
        raise ChannelError(f"user {row[0]} is {row[1]}: only staff users are paged")
    return str(row[0])


_COLUMNS = "id, user_id, position, channel, address"


def list_channels(conn: Conn, user: str, *, revealed_to: str | None = None) -> list[StaffChannel]:
    """The channels of ``user`` (user id or sign-in name), in paging order. ``revealed_to``
    (an actor) will see the addresses unmasked: that read of personal data is audited."""
    user_id = _user(conn, user)
    if revealed_to is not None:
        audit.append(conn, revealed_to, "user.channels_revealed", f"user:{user_id}")
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM staff_channels WHERE user_id = %s ORDER BY position",  # noqa: S608
        (user_id,),
    ).fetchall()
    return [StaffChannel(int(r[0]), str(r[1]), int(r[2]), str(r[3]), r[4]) for r in rows]


def add_channel(
    conn: Conn, user: str, channel: str, address: str | None, *, actor: str,
    position: int | None = None,
) -> StaffChannel:  # fmt: skip
    """Add a channel at ``position`` (default: last; later ones move down); audited."""
    stored = check_address(channel, address)
    with conn.transaction():
        user_id = _user(conn, user)
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (user_id,))
        count = conn.execute(
            "SELECT count(*) FROM staff_channels WHERE user_id = %s", (user_id,)
        ).fetchone()
        n = int(count[0]) if count else 0
        if n >= 8:
            raise ChannelError("a user has at most 8 paging channels", status=409)
        pos = n if position is None else max(0, min(position, n))
        # Make room: shift the later ones down (highest first, the unique key holds).
        for (cid,) in conn.execute(
            "SELECT id FROM staff_channels WHERE user_id = %s AND position >= %s "
            "ORDER BY position DESC",
            (user_id, pos),
        ).fetchall():
            conn.execute("UPDATE staff_channels SET position = position + 1 WHERE id = %s", (cid,))
        row = conn.execute(
            "INSERT INTO staff_channels (user_id, position, channel, address) "  # noqa: S608
            f"VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
            (user_id, pos, channel, stored),
        ).fetchone()
        assert row is not None
        audit.append(conn, actor, "user.channel_added", f"user:{user_id}",
                     {"channel_id": int(row[0]), "channel": channel, "position": pos})  # fmt: skip
    return StaffChannel(int(row[0]), str(row[1]), int(row[2]), str(row[3]), row[4])


def remove_channel(conn: Conn, user: str, channel_id: int, *, actor: str) -> None:
    """Remove one channel (the later ones move up); audited."""
    with conn.transaction():
        user_id = _user(conn, user)
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (user_id,))
        row = conn.execute(
            "DELETE FROM staff_channels WHERE id = %s AND user_id = %s RETURNING position, channel",
            (channel_id, user_id),
        ).fetchone()
        if row is None:
            raise ChannelError(f"user {user_id} has no channel #{channel_id}", status=404)
        for (cid,) in conn.execute(
            "SELECT id FROM staff_channels WHERE user_id = %s AND position > %s ORDER BY position",
            (user_id, int(row[0])),
        ).fetchall():
            conn.execute("UPDATE staff_channels SET position = position - 1 WHERE id = %s", (cid,))
        audit.append(conn, actor, "user.channel_removed", f"user:{user_id}",
                     {"channel_id": channel_id, "channel": str(row[1])})  # fmt: skip
