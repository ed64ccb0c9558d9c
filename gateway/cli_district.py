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


def cmd_report(args: argparse.Namespace) -> int:
    """Write the monthly per-bed PDF of a site or district (audited as a read by ``cli``)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from gateway import audit  # noqa: PLC0415
    from gateway.errors import NotFoundError  # noqa: PLC0415
    from gateway.reports.sla_targets import load_local_targets  # noqa: PLC0415
    from gateway.storage import supervision as store  # noqa: PLC0415
    from gateway.storage import visits as visits_store  # noqa: PLC0415
    from gateway.supervision import bed_report  # noqa: PLC0415
    from gateway.supervision.bed_report_pdf import render_pdf  # noqa: PLC0415
    from gateway.supervision.district import month_bounds  # noqa: PLC0415
    from gateway.visits.config import load_visits_config  # noqa: PLC0415

    settings = cli_settings(args)
    path = settings.visits.config_path
    cfg = load_visits_config(path) if path else load_visits_config()
    month_bounds(args.month)  # a malformed month fails before any query
    with _connect(args) as conn:
        if args.site:
            if store.site_info(conn, args.site) is None:
                raise NotFoundError(f"no site {args.site!r}")
            scope, sites = f"site:{args.site}", [args.site]
        else:
            districts.check_district_id(args.district)
            scope = f"district:{args.district}"
            sites = visits_store.district_site_ids(conn, args.district)
        targets = {s: load_local_targets(s) for s in sites}  # each site's contract target
        report = bed_report.collect(conn, cfg, sites, month=args.month, now=datetime.now(UTC),
                                    scope=scope, targets=targets)  # fmt: skip
        body = render_pdf(report)
        with open(args.out, "wb") as fh:
            fh.write(body)
        audit.append(
            conn,
            ACTOR,
            "supervision.read",
            scope,
            {"what": "bed_report_pdf", "month": args.month, "beds": report.totals.beds},
        )
    print(f"wrote {args.out}: {len(report.sections)} site(s), {report.totals.beds} bed(s)")
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
    rep = cmds.add_parser("report", help="monthly per-bed supervision report (Chinese PDF)")
    rep.add_argument("--month", required=True, help="local month, YYYY-MM")
    where = rep.add_mutually_exclusive_group(required=True)
    where.add_argument("--site", help="site id")
    where.add_argument("--district", help="district id (every site of it)")
    rep.add_argument("--out", "-o", required=True, help="PDF file to write")
    rep.set_defaults(func=cmd_report)
