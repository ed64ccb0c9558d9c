"""``safehome roster``: the duty roster from the command line (add, list, remove shifts).

Times are ISO 8601. A time without an offset is the site's local time (``sites.utc_offset_s``);
output is in the site's local time too. Every change is checked (see
:func:`gateway.escalation.roster.add_roster_shift`) and recorded in the audit log with the
actor ``cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings
from gateway.escalation.roster import (
    DutyRole,
    RosterError,
    Shift,
    add_roster_shift,
    remove_roster_shift,
    shifts_at,
    site_utc_offset_s,
)

ACTOR = "cli"


def parse_time(option: str, text: str, utc_offset_s: int) -> datetime:
    """An ISO 8601 time; without an offset it is taken in the site's local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RosterError(
            f"{option}: not an ISO 8601 time: {text!r} (e.g. 2026-11-23T08:00 in the site's "
            "local time, or 2026-11-23T08:00+08:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s)))
    return value


def _local(value: datetime, utc_offset_s: int) -> str:
    return value.astimezone(timezone(timedelta(seconds=utc_offset_s))).isoformat(timespec="minutes")


def _who(shift: Shift) -> str:
    return f"{shift.username} ({shift.user_id})" if shift.username else shift.user_id


def _line(shift: Shift, utc_offset_s: int) -> str:
    return (
        f"#{shift.id} {_who(shift)} {_local(shift.starts_at, utc_offset_s)} to "
        f"{_local(shift.ends_at, utc_offset_s)}"
    )


def _json(shift: Shift) -> dict[str, Any]:
    return {
        "id": shift.id,
        "site_id": shift.site_id,
        "user_id": shift.user_id,
        "username": shift.username,
        "role": shift.role.value,
        "starts_at": shift.starts_at.isoformat(),
        "ends_at": shift.ends_at.isoformat(),
    }


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    return psycopg.connect(cli_settings(args).database.conninfo(), autocommit=True)


def cmd_roster_add(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            offset = site_utc_offset_s(conn, args.site)
            shift = add_roster_shift(
                conn,
                args.site,
                user=args.user,
                role=DutyRole(args.role),
                starts_at=parse_time("--start", args.start, offset),
                ends_at=parse_time("--end", args.end, offset),
                actor=ACTOR,
            )
        except RosterError as exc:
            print(f"safehome roster add: {exc}", file=sys.stderr)
            return 2
    print(f"shift added: {shift.role.value} {_line(shift, offset)}")
    return 0


def cmd_roster_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            offset = site_utc_offset_s(conn, args.site)
            at = parse_time("--at", args.at, offset) if args.at else datetime.now(UTC)
            shifts = shifts_at(conn, args.site, at)
        except RosterError as exc:
            print(f"safehome roster list: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps({"site_id": args.site, "at": at.isoformat(),
                          "shifts": [_json(s) for s in shifts]}))  # fmt: skip
        return 0
    print(f"on duty at site {args.site} at {_local(at, offset)}:")
    for role in (DutyRole.SUPERVISOR, DutyRole.DUTY_STAFF):
        print(f"  {role.value}:")
        mine = [s for s in shifts if s.role is role]
        for shift in mine:
            print(f"    {_line(shift, offset)}")
        if not mine:
            print("    (nobody on duty)")
    return 0


def cmd_roster_remove(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        try:
            offset = site_utc_offset_s(conn, args.site)
            shift = remove_roster_shift(conn, args.site, args.id, actor=ACTOR)
        except RosterError as exc:
            print(f"safehome roster remove: {exc}", file=sys.stderr)
            return 2
    print(f"shift removed: {shift.role.value} {_line(shift, offset)}")
    return 0


def add_roster_commands(sub: Any) -> None:
    """Register ``safehome roster add|list|remove`` on the top-level subparsers."""
    roster = sub.add_parser("roster", help="the duty roster (shifts)").add_subparsers(
        dest="roster_cmd", required=True
    )
    add = roster.add_parser("add", help="add a shift (checked, audited)")
    add.add_argument("--site", required=True, help="site id")
    add.add_argument("--user", required=True, help="user id or sign-in name")
    add.add_argument("--role", required=True, choices=[r.value for r in DutyRole])
    add.add_argument("--start", required=True, help="ISO 8601; no offset = site local time")
    add.add_argument("--end", required=True, help="ISO 8601; no offset = site local time")
    add.set_defaults(func=cmd_roster_add)

    lst = roster.add_parser("list", help="who is on duty (now, or --at)")
    lst.add_argument("--site", required=True, help="site id")
    lst.add_argument("--at", help="ISO 8601 (default: now); no offset = site local time")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_roster_list)

    rm = roster.add_parser("remove", help="delete a shift by id (audited)")
    rm.add_argument("--site", required=True, help="site id")
    rm.add_argument("--id", required=True, type=int, help="shift id (from add or list)")
    rm.set_defaults(func=cmd_roster_remove)
