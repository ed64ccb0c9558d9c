"""``safehome user rename USER NAME``: a user's display name (issue 11 §3), and
``safehome user site-phone SITE [PHONE]``: a care centre's phone shown to families, and
``safehome user language USER|--contact CONTACT zh-CN|en``: whose notifications are English.

``USER`` is a user id or sign-in name. The console, the timelines and the family view show
the display name with the role ("护工 张丽") instead of ids or login names. Audited with the
actor ``cli``; names are never logged.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings as _settings
from gateway.errors import SafehomeError
from gateway.storage import auth_sessions, languages, people

ACTOR = "cli"


def cmd_rename(args: argparse.Namespace) -> int:
    with psycopg.connect(_settings(args).database.conninfo(), autocommit=True) as conn:
        user_id = auth_sessions.resolve_user(conn, args.user)
        if user_id is None:
            print(f"safehome: no user {args.user!r}", file=sys.stderr)
            return 2
        try:
            changed = people.set_display_name(conn, user_id, args.name, actor=ACTOR)
        except SafehomeError as exc:
            print(f"safehome user rename: {exc.detail}", file=sys.stderr)
            return 2
    print(f"display name of {user_id} {'set' if changed else 'unchanged'}")
    return 0


def cmd_language(args: argparse.Namespace) -> int:
    """A user's (or, with --contact, a contact's) language for pages and notifications."""
    with psycopg.connect(_settings(args).database.conninfo(), autocommit=True) as conn:
        try:
            if args.contact:
                languages.set_contact_language(conn, args.who, args.language, actor=ACTOR)
                who = f"contact {args.who}"
            else:
                user_id = auth_sessions.resolve_user(conn, args.who)
                if user_id is None:
                    print(f"safehome: no user {args.who!r}", file=sys.stderr)
                    return 2
                languages.set_user_language(conn, user_id, args.language, actor=ACTOR)
                who = user_id
        except SafehomeError as exc:
            print(f"safehome user language: {exc.detail}", file=sys.stderr)
            return 2
    print(f"language of {who} set to {args.language}")
    return 0


def cmd_site_phone(args: argparse.Namespace) -> int:
    conn: psycopg.Connection[Any]
    with psycopg.connect(_settings(args).database.conninfo(), autocommit=True) as conn:
        try:
            people.set_care_phone(conn, args.site, args.phone, actor=ACTOR)
        except (SafehomeError, psycopg.errors.CheckViolation) as exc:
            print(f"safehome user site-phone: {exc}", file=sys.stderr)
            return 2
    print(f"care phone of {args.site} {'set' if args.phone else 'cleared'}")
    return 0


def add_people_commands(user: Any) -> None:
    """Add ``rename``, ``language`` and ``site-phone`` to the ``safehome user`` sub-commands."""
    rename = user.add_parser("rename", help="set a user's display name (shown as '护工 张丽')")
    rename.add_argument("user", help="user id or sign-in name")
    rename.add_argument("name", help="display name, 1-64 characters")
    rename.set_defaults(func=cmd_rename)
    lang = user.add_parser(
        "language", help="set a user's (or --contact's) language: zh-CN (default) or en"
    )
    lang.add_argument("who", help="user id or sign-in name (with --contact: a contact id)")
    lang.add_argument("language", choices=languages.LANGUAGES)
    lang.add_argument("--contact", action="store_true", help="WHO is a family/worker contact")
    lang.set_defaults(func=cmd_language)
    phone = user.add_parser("site-phone", help="set (or clear) a care centre's phone for families")
    phone.add_argument("site", help="site id")
    phone.add_argument("phone", nargs="?", default=None, help="phone number; omit to clear")
    phone.set_defaults(func=cmd_site_phone)
