"""``safehome user channel add|list|remove``: a staff user's ordered paging channels.

Pages of the escalation ladder go to the user's channels in order (the next one when a
channel fails). ``USER`` is a user id or sign-in name of a staff user. Every change is
recorded in the audit log with the actor ``cli``; addresses (phone numbers, e-mail) are
shown masked unless ``--reveal`` and never logged.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings
from gateway.paging.channels import ChannelError, add_channel, list_channels, remove_channel

ACTOR = "cli"


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    return psycopg.connect(cli_settings(args).database.conninfo(), autocommit=True)


def cmd_channel_add(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            added = add_channel(conn, args.user, args.channel, args.address, actor=ACTOR,
                                position=args.position)  # fmt: skip
        except ChannelError as exc:
            print(f"safehome user channel add: {exc}", file=sys.stderr)
            return 2
    print(f"channel #{added.id} added: {added.position + 1}. {added.channel} "
          f"{added.masked() or ''}".rstrip())  # fmt: skip
    return 0


def cmd_channel_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            channels = list_channels(conn, args.user, revealed_to=ACTOR if args.reveal else None)
        except ChannelError as exc:
            print(f"safehome user channel list: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps([c.as_json(reveal=args.reveal) for c in channels], ensure_ascii=False))
        return 0
    if not channels:
        print("(no paging channels: pages reach this user on the console only)")
    for c in channels:
        address = c.address if args.reveal else c.masked()
        print(f"#{c.id} {c.position + 1}. {c.channel} {address or ''}".rstrip())
    return 0


def cmd_channel_remove(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            remove_channel(conn, args.user, args.id, actor=ACTOR)
        except ChannelError as exc:
            print(f"safehome user channel remove: {exc}", file=sys.stderr)
            return 2
    print(f"channel #{args.id} removed")
    return 0


def add_channel_commands(user: Any) -> None:
    """Add ``channel add|list|remove`` under the ``user`` subcommands."""
    channel = user.add_parser("channel", help="a staff user's ordered paging channels")
    sub = channel.add_subparsers(dest="channel_cmd", required=True)
    add = sub.add_parser("add", help="add a paging channel (audited)")
    add.add_argument("--user", required=True, help="user id or sign-in name")
    add.add_argument(
        "--channel", required=True,
        help="sms, voice, email, webhook[:name], wecom[:name], dingtalk[:name], feishu[:name]",
    )  # fmt: skip
    add.add_argument("--address", help="phone number (sms, voice) or e-mail address (email)")
    add.add_argument("--position", type=int, help="1-based place in the order (default: last)")
    add.set_defaults(func=_positioned(cmd_channel_add))
    lst = sub.add_parser("list", help="the user's paging channels in order")
    lst.add_argument("--user", required=True)
    lst.add_argument("--reveal", action="store_true", help="show addresses unmasked")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_channel_list)
    rm = sub.add_parser("remove", help="remove a paging channel (audited)")
    rm.add_argument("--user", required=True)
    rm.add_argument("--id", type=int, required=True, help="the channel's #id (see list)")
    rm.set_defaults(func=cmd_channel_remove)


def _positioned(func: Any) -> Any:
    """Turn the 1-based ``--position`` into the stored 0-based one."""

    def run(args: argparse.Namespace) -> int:
        if args.position is not None:
            if args.position < 1:
                print("safehome user channel add: --position starts at 1", file=sys.stderr)
                return 2
            args.position -= 1
        result: int = func(args)
        return result

    return run
