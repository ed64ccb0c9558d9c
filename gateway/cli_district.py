"""``safehome district``: districts without code (issue 13 §5).

* ``list [--json]``: every district, its sites, supervisors and community-worker count;
* ``assign-site SITE DISTRICT`` / ``unassign-site SITE``: which district a site belongs to;
* ``assign-user USER DISTRICT``: put a ``district_supervisor`` (or ``community_worker``) user,
  by id or sign-in name, in a district;
* ``report --month YYYY-MM (--site SITE | --district DISTRICT) --out FILE.pdf``: the monthly
  per-bed supervision report as a Chinese PDF (:mod:`gateway.supervision.bed_report`).

Changes are audited with the actor ``cli`` (:mod:`gateway.supervision.districts`); domain
errors end in :func:`gateway.cli.main` (exit code by kind).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings
from gateway.supervision import districts

ACTOR = "cli"


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    return psycopg.connect(cli_settings(args).database.conninfo(), autocommit=True)


def cmd_list(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        found = districts.list_districts(conn)
    if args.json:
        print(json.dumps([asdict(d) for d in found], ensure_ascii=False))
        return 0
    if not found:
        print("no districts yet: safehome district assign-site SITE DISTRICT")
    for d in found:
        print(f"{d.district_id}: sites {', '.join(d.sites) or '-'}; "
              f"supervisors {', '.join(d.supervisors) or '-'}; "
              f"community workers {d.workers}")  # fmt: skip
    return 0


def cmd_assign_site(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        before = districts.assign_site(conn, args.site, args.district, actor=ACTOR)
    moved = "" if before is None or before == args.district else f" (was {before})"
    print(f"site {args.site} is in district {args.district}{moved}")
    return 0


def cmd_unassign_site(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        before = districts.unassign_site(conn, args.site, actor=ACTOR)
    print(f"site {args.site} taken out of district {before}")
    return 0


def cmd_assign_user(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        user_id, role = districts.assign_user(conn, args.user, args.district, actor=ACTOR)
    print(f"user {user_id} ({role}) is in district {args.district}")
    return 0


_COMMANDS: list[tuple[str, str, list[tuple[str, str]], Any]] = [
    ("assign-site", "put a site in a district (audited)",
     [("site", "site id"), ("district", "district id (letters, digits, _ -)")], cmd_assign_site),
    ("unassign-site", "take a site out of its district (audited)",
     [("site", "site id")], cmd_unassign_site),
    ("assign-user", "put a district_supervisor or community_worker in a district (audited)",
     [("user", "user id or sign-in name"), ("district", "district id")], cmd_assign_user),
]  # fmt: skip


def add_district_commands(sub: Any) -> None:
    """Register ``safehome district ...`` on the top-level subparsers."""
    district = sub.add_parser("district", help="districts (民政监管): sites, supervisors, report")
    cmds = district.add_subparsers(dest="district_cmd", required=True)
    lst = cmds.add_parser("list", help="every district with its sites and supervisors")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_list)
    for name, text, positionals, func in _COMMANDS:
        cmd = cmds.add_parser(name, help=text)
        for arg, arg_help in positionals:
            cmd.add_argument(arg, help=arg_help)
        cmd.set_defaults(func=func)
