"""``safehome platform push|receiver``: queue the monthly platform push by hand; run the
local receiving endpoint (demo, tests, a platform's integration check)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from gateway.cli_settings import cli_settings

ACTOR = "cli"


def cmd_push(args: argparse.Namespace) -> int:
    from gateway.platform.push import due_month, enqueue_monthly  # noqa: PLC0415
    from gateway.storage import messages  # noqa: PLC0415
    from gateway.visits.config import load_visits_config  # noqa: PLC0415

    s = cli_settings(args)
    v = s.visits
    cfg = load_visits_config(v.config_path) if v.config_path else load_visits_config()
    month = args.month or due_month(datetime.now(UTC), s.platform)
    if not s.platform.enabled:
        print(
            "safehome platform push: platform.enabled is false: queued pushes wait until "
            "a gateway with the platform enabled runs",
            file=sys.stderr,
        )
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        sites = [args.site] if args.site else (s.platform.sites or messages.site_ids(conn))
        for site_id in sites:
            try:
                q = enqueue_monthly(conn, cfg, s.platform, site_id, month, actor=ACTOR)
            except (LookupError, ValueError) as exc:
                print(f"safehome platform push: {exc}", file=sys.stderr)
                return 2
            if q.outbox_id is not None:
                print(f"{site_id} {month}: queued (outbox #{q.outbox_id}, key {q.key})")
            else:
                states = ", ".join(f"#{r.outbox_id} {r.state}" for r in q.existing)
                print(f"{site_id} {month}: already queued ({states}, key {q.key})")
    return 0


def cmd_receiver(args: argparse.Namespace) -> int:
    from gateway.platform.receiver import PlatformReceiver  # noqa: PLC0415

    secret = Path(args.secret_file).read_bytes().strip()
    if not secret:
        print("safehome platform receiver: the secret file is empty", file=sys.stderr)
        return 2
    receiver = PlatformReceiver(
        secret, Path(args.dir), host=args.host, port=args.port, max_skew_s=args.max_skew_s
    )
    print(
        f"platform receiver listening on http://{args.host}:{receiver.port}/ "
        f"(documents in {args.dir})",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        receiver.serve_forever()
    return 0


def add_platform_commands(sub: Any) -> None:
    """Register ``safehome platform …`` on the top-level subparsers."""
    platform = sub.add_parser(
        "platform", help="the monthly push to the provincial/municipal platform"
    ).add_subparsers(dest="platform_cmd", required=True)
    push = platform.add_parser("push", help="queue the monthly push (idempotent by key)")
    push.add_argument("--month", help="YYYY-MM (default: the latest due month)")
    push.add_argument("--site", help="one site (default: platform.sites, or every site)")
    push.set_defaults(func=cmd_push)
    rec = platform.add_parser("receiver", help="a local receiving endpoint (checks signatures)")
    rec.add_argument("--port", type=int, required=True)
    rec.add_argument("--host", default="127.0.0.1")
    rec.add_argument("--secret-file", required=True, help="the shared HMAC secret")
    rec.add_argument("--dir", default="var/platform-received", help="where documents go")
    rec.add_argument("--max-skew-s", type=float, default=300.0)
    rec.set_defaults(func=cmd_receiver)
