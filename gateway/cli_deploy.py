"""``safehome install-service``: write the systemd units of a deployment (gateway.service_units).

Writes into ``--target`` (default ``/etc/systemd/system``) or, with ``--dry-run``, prints the
units. It changes nothing else: creating the user, the credentials and running
``systemctl daemon-reload`` are the operator's steps (printed at the end, docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.service_units import (
    CREDENTIALS,
    GATEWAY_UNIT,
    UnitError,
    UnitOptions,
    default_executable,
    render_units,
    write_units,
)


def cmd_install_service(args: argparse.Namespace) -> int:
    try:
        executable = Path(args.exec) if args.exec else default_executable()
        options = UnitOptions(
            executable=executable,
            config_dir=Path(args.config_dir),
            user=args.user,
            services=args.services,
            watchdog_s=args.watchdog_s,
        )
        units = render_units(options)
    except UnitError as exc:
        print(f"safehome install-service: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for name, text in units.items():
            print(f"### {name}\n{text}")
        return 0
    try:
        written = write_units(units, Path(args.target))
    except OSError as exc:
        print(f"safehome install-service: cannot write units: {exc}", file=sys.stderr)
        return 2
    creds = options.config_dir / "credentials"
    state, user = options.state_dir, options.user
    steps = [
        f"useradd --system --home-dir {state} --shell /usr/sbin/nologin {user}",
        f"install -d -o {user} -g {user} -m 0751 {state}",
    ]
    if options.services == "project":
        steps += [
            f"SAFEHOME_VAR_DIR={state} {options.executable} services up   # creates, migrates",
            f"{options.executable} services down   # systemd runs them from now on",
            f"chown -R {user}: {state}/mqtt   # the broker runs as {user}",
            # Every credential the units load: a missing LoadCredential= file fails the start.
            f"install -d -m 0700 {creds} && cp {state}/secrets/{{"
            + ",".join(c for c, _ in CREDENTIALS)
            + f"}} {creds}/",
        ]
    else:
        steps.append(
            f"install -d -m 0700 {creds}   # then one file each: "
            + ", ".join(c for c, _ in CREDENTIALS)
        )
    steps.append(f"systemctl daemon-reload && systemctl enable --now {GATEWAY_UNIT}")
    print("\n".join(f"wrote {p}" for p in written))
    print("next (as root; docs/operations.md):\n" + "\n".join(f"  {s}" for s in steps))
    return 0


def add_deploy_commands(sub: Any) -> None:
    """Register ``install-service`` on the top-level subparsers."""
    p = sub.add_parser(
        "install-service", help="write the systemd units (gateway, standby, services)"
    )
    p.add_argument("--target", default="/etc/systemd/system", help="directory to write into")
    p.add_argument("--dry-run", action="store_true", help="print the units instead")
    p.add_argument("--exec", help="the safehome executable (default: the one on PATH)")
    p.add_argument("--config-dir", default="/etc/safehome", help="overlay TOML and credentials")
    p.add_argument("--user", default="safehome", help="the service user (created by you)")
    p.add_argument(
        "--services",
        choices=["system", "project"],
        default="system",
        help="use Debian's postgresql/mosquitto units, or write units for the project's own",
    )
    p.add_argument("--watchdog-s", type=int, default=30, help="WatchdogSec= of the gateway")
    p.set_defaults(func=cmd_install_service)
