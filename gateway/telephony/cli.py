"""``safehome user resident-phone RESIDENT [PHONE]`` and ``safehome user location-phone
LOCATION [PHONE]``: the numbers the console's "呼叫住户" dials (the resident's own phone,
else their room's or home's landline; docs/telephony.md). Audited with the actor ``cli``;
numbers are never printed back or logged. Omit PHONE to clear."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings
from gateway.errors import SafehomeError
from gateway.telephony import service

ACTOR = "cli"


def cmd_set_phone(args: argparse.Namespace) -> int:
    what = args.phone_owner
    conn: psycopg.Connection[Any]
    with psycopg.connect(cli_settings(args).database.conninfo(), autocommit=True) as conn:
        try:
            service.set_phone(conn, what, args.ident, args.phone, actor=ACTOR)
        except SafehomeError as exc:
            print(f"safehome user {what}-phone: {exc.detail}", file=sys.stderr)
            return 2
    print(f"phone of {what} {args.ident} {'set' if args.phone else 'cleared'}")
    return 0


def add_phone_commands(user: Any) -> None:
    """Add ``resident-phone`` and ``location-phone`` to the ``safehome user`` sub-commands."""
    for what, text in (("resident", "a resident's own phone"),
                       ("location", "a room's or home's landline")):  # fmt: skip
        cmd = user.add_parser(f"{what}-phone", help=f"set (or clear) {text} for click-to-call")
        cmd.add_argument("ident", metavar=what.upper(), help=f"{what} id")
        cmd.add_argument("phone", nargs="?", default=None, help="phone number; omit to clear")
        cmd.set_defaults(func=cmd_set_phone, phone_owner=what)
