"""``safehome``: the command line of the gateway (one entry point, subcommands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from gateway.cli_settings import cli_settings as _settings
from gateway.errors import SafehomeError
from gateway.installer.exits import exit_code
from gateway.kit.cli import add_eval_parser as add_inactivity_eval
from gateway.logs import configure_logging
from gateway.settings import SettingsError

log = logging.getLogger("safehome")


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from gateway.storage import timescale
    from gateway.storage.migrate import SchemaError, migrate

    s = _settings(args)
    with psycopg.connect(s.database.owner_conninfo(), autocommit=True) as conn:
        try:
            applied = migrate(conn, app_role=s.database.app_role)
        except SchemaError as exc:
            print(f"safehome db migrate: {exc}", file=sys.stderr)
            return 2
        timescale.apply_policies(conn, timescale.detect(conn), s.retention)
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}"
                                                           for m in applied))  # fmt: skip
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    from gateway.storage import timescale
    from gateway.storage.migrate import check_schema

    s = _settings(args)
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        check_schema(conn)
        info = timescale.detect(conn)
    print(f"schema current; timescaledb edition: {info.edition.value} ({info.version or '-'})")
    return 0


def cmd_gateway_run(args: argparse.Namespace) -> int:
    from gateway.runtime import Runtime

    s = _settings(args)
    configure_logging(s.log.level, s.log.format)

    async def main() -> None:
        async with Runtime(s) as rt:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, rt.request_stop)
            await rt.run()

    asyncio.run(main())
    return 0


def cmd_broker_sync(args: argparse.Namespace) -> int:
    from gateway.localsvc_admin import sync_broker_files

    s = _settings(args, local_secrets=True)
    n = sync_broker_files(s)
    print(f"broker accounts written for {n} device(s) and the broker reloaded")
    return 0


def cmd_site_apply(args: argparse.Namespace) -> int:
    from gateway.commissioning import (
        apply_site_definition,
        credentials_json,
        load_site_definition,
    )

    s = _settings(args)
    definition = load_site_definition(Path(args.file))
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        creds = apply_site_definition(conn, definition, rotate_passwords=args.rotate_passwords)
    out = Path(args.credentials_out) if args.credentials_out else None
    if out is not None:
        from gateway.privatefile import write_private

        write_private(out, json.dumps(credentials_json(creds), indent=2).encode())
        print(f"{len(creds)} new device credential(s) written to {out} (mode 0600)")
    else:
        print(f"{len(creds)} new device credential(s); pass --credentials-out to save them")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from gateway.localsvc_admin import LocalServices

    s = _settings(args, local_secrets=True)
    services = LocalServices(s)
    if args.action == "up":
        services.up()
        print(services.describe())
    elif args.action == "down":
        services.down()
        print("local services stopped")
    else:
        print(services.describe())
    return 0


def cmd_eval_falls(args: argparse.Namespace) -> int:
    from gateway.evaluation import evaluate_falls, render_fall_report

    try:
        ev = evaluate_falls(Path(args.data))
    except (OSError, ValueError) as exc:
        print(f"safehome eval falls: {exc}", file=sys.stderr)
        return 2
    print(render_fall_report(ev))
    if args.json:
        print(json.dumps(ev.to_json()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from devices.manifest import load_manifest
    from devices.scenario import default_scenario, load_scenario
    from devices.simulator import SimulationConfig, run_simulation

    manifest = load_manifest(args.manifest)
    scenario = (
        load_scenario(args.scenario) if args.scenario else default_scenario()
        if args.scenario_default else None
    )  # fmt: skip
    config = SimulationConfig(
        manifest=manifest,
        scenario=scenario,
        duration_s=args.duration,
        seed=args.seed,
        heartbeat_s=args.heartbeat,
        stream_rate_hz=args.rate,
        record_path=args.record,
    )
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        report = await run_simulation(config, stop=stop)
        print(json.dumps(report.to_dict() if args.json else _report_summary(report)))

    asyncio.run(main())
    return 0


def _report_summary(report: object) -> dict[str, object]:
    from devices.simulator import SimulationReport

    assert isinstance(report, SimulationReport)
    return {
        "site": report.site,
        "devices": len(report.devices),
        "published": {str(k): v for k, v in report.published.items()},
        "acked": {str(k): v for k, v in report.acked.items()},
        "publish_rate": round(report.publish_rate, 1),
        "incidents": len(report.incidents),
    }


def cmd_replay(args: argparse.Namespace) -> int:
    from devices.errors import ManifestError
    from gateway.replay import run_replay

    try:
        return run_replay(
            Path(args.file),
            _settings(args).analysis,
            sys.stdout,
            manifest=Path(args.manifest) if args.manifest else None,
            as_json=args.json,
            tail_s=args.tail,
        )
    except (OSError, ManifestError) as exc:
        print(f"safehome replay: {exc}", file=sys.stderr)
        return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(Path(args.config) if args.config else None, duration_s=args.duration)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway import audit_anchor
    from gateway.audit import verify

    s = _settings(args)
    key = None if s.audit.anchor_key is None else s.audit.anchor_key.get_secret_value().encode()
    path = s.audit_anchor_path()
    try:
        anchors = [] if key is None else audit_anchor.read(path, key)
    except audit_anchor.AnchorError as exc:
        print(f"audit anchors REFUSED: {exc}", file=sys.stderr)
        return 1
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        result = verify(conn, anchors, clock_step_tolerance_s=s.audit.clock_step_tolerance_s)
    if not result.ok:
        print(f"audit chain BROKEN at seq {result.broken_seq}: {result.problem} "
              f"({result.entries} entries read)")  # fmt: skip
        return 1
    if key is None:
        print(f"audit chain intact: {result.entries} entries, head {result.head_hash} "
              "(checked internally only: no audit.anchor_key, so no anchors)")  # fmt: skip
        return 0
    if result.head_seq > audit_anchor.last_seq(anchors):
        audit_anchor.write(path, audit_anchor.make(key, result.head_seq, result.head_hash))
    print(f"audit chain intact: {result.entries} entries, head {result.head_hash}, "
          f"{result.anchors_checked} of {len(anchors)} anchor(s) matched")  # fmt: skip
    return 0


def cmd_report_sla(args: argparse.Namespace) -> int:
    from gateway.reports.sla import SiteNotFoundError, sla_report

    s = _settings(args)
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        try:
            report = sla_report(conn, args.site, args.month)
        except (SiteNotFoundError, ValueError) as exc:
            print(f"safehome: {exc}", file=sys.stderr)
            return 2
    if args.csv:
        csv_path = Path(args.csv)
        csv_path.write_text(report.to_csv(), encoding="utf-8")
        kpi_path = csv_path.with_name(csv_path.stem + "-kpis.csv")
        kpi_path.write_text(report.kpis_csv(), encoding="utf-8")
        print(f"wrote {csv_path} and {kpi_path}", file=sys.stderr)
    if args.png:
        print(f"wrote {report.to_png(args.png, args.lang)}", file=sys.stderr)
    if args.json:
        print(report.to_json())
    else:
        print(report.to_text(args.lang), end="")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create an API user; the password comes from stdin (piped) or a hidden prompt."""
    import getpass

    from gateway.api.auth import AuthError, create_user

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("safehome: passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    s = _settings(args)
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        try:
            user_id = create_user(conn, args.username, args.role, password,
                                  site_id=args.site, residents=args.resident or ())  # fmt: skip
        except (AuthError, ValueError) as exc:
            print(f"safehome: {exc}", file=sys.stderr)
            return 2
        except psycopg.errors.IntegrityError as exc:
            print(f"safehome: user not created: {exc.diag.message_primary}", file=sys.stderr)
            return 2
    print(f"user {user_id} created ({args.role})")
    return 0


def cmd_user_unlock(args: argparse.Namespace) -> int:
    """``user unlock USER``: clear the sign-in throttle's failures of a user (audited)."""
    from gateway.api.auth import AuthError, check_jwt_secret
    from gateway.api.login_throttle import LoginThrottle
    from gateway.api.throttle import ThrottlePolicy
    from gateway.storage import auth_sessions, users

    s = _settings(args)
    try:  # the throttle's keys are HMACs under a key derived from api.jwt_secret
        throttle = LoginThrottle(ThrottlePolicy.of(s.api), check_jwt_secret(s.api))
    except AuthError as exc:
        print(f"safehome: {exc}", file=sys.stderr)
        return 2
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        user_id = auth_sessions.resolve_user(conn, args.user)
        found = None if user_id is None else users.sign_in_name(conn, user_id)
        if user_id is None or found is None:
            print(f"safehome: no user {args.user!r}", file=sys.stderr)
            return 2
        cleared = throttle.unlock(conn, found[0], user_id=user_id, actor="cli")
    print(f"user {user_id} unlocked ({cleared} failed sign-in(s) cleared)")
    return 0


def _read_new_password() -> str | None:
    """A new password from stdin (piped) or a hidden prompt typed twice; None if they differ."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != password:
        print("safehome: passwords differ", file=sys.stderr)
        return None
    return password


def cmd_user_manage(args: argparse.Namespace) -> int:
    """``user deactivate|reactivate|passwd USER``: revokes sessions where due; audited."""
    from gateway.api.auth import AuthError, check_new_password, hash_password
    from gateway.storage import auth_sessions

    password_hash = None
    if args.user_cmd == "passwd":
        password = _read_new_password()
        if password is None:
            return 2
        try:
            check_new_password(password)
        except AuthError as exc:
            print(f"safehome: {exc}", file=sys.stderr)
            return 2
        password_hash = hash_password(password)
    s = _settings(args)
    with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
        user_id = auth_sessions.resolve_user(conn, args.user)
        if user_id is None:
            print(f"safehome: no user {args.user!r}", file=sys.stderr)
            return 2
        if password_hash is not None:
            revoked = auth_sessions.set_password_hash(conn, user_id, password_hash, actor="cli")
            print(f"password of {user_id} changed; {revoked} session(s) ended")
            return 0
        active = args.user_cmd == "reactivate"
        changed = auth_sessions.set_active(conn, user_id, active, actor="cli")
    state = "reactivated" if active else "deactivated (its sessions ended)"
    print(f"user {user_id} {state}" if changed else f"user {user_id} was already {args.user_cmd}d")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safehome", description=__doc__)
    parser.add_argument("--config", help="settings overlay TOML (default: $SAFEHOME_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_db_migrate)
    db.add_parser("check", help="verify the schema is current").set_defaults(func=cmd_db_check)

    gw = sub.add_parser("gateway", help="run the gateway").add_subparsers(
        dest="gw_cmd", required=True
    )
    gw.add_parser("run", help="run ingest, analysis and the API").set_defaults(func=cmd_gateway_run)

    broker = sub.add_parser("broker", help="broker accounts").add_subparsers(
        dest="broker_cmd", required=True
    )
    broker.add_parser(
        "sync", help="write passwd/ACL for the project's broker from the registry and reload it"
    ).set_defaults(func=cmd_broker_sync)

    site = sub.add_parser("site", help="registry").add_subparsers(dest="site_cmd", required=True)
    apply = site.add_parser("apply", help="upsert a site definition (TOML)")
    apply.add_argument("file")
    apply.add_argument("--rotate-passwords", action="store_true")
    apply.add_argument("--credentials-out", help="write new device credentials here (0600)")
    apply.set_defaults(func=cmd_site_apply)

    services = sub.add_parser("services", help="the project's private PostgreSQL and Mosquitto")
    services.add_argument("action", choices=["up", "down", "status"])
    services.set_defaults(func=cmd_services)

    ev = sub.add_parser("eval", help="evaluate detectors on recorded data").add_subparsers(
        dest="eval_cmd", required=True
    )
    falls = ev.add_parser("falls", help="fall detector on a SisFall-format .npz file")
    falls.add_argument("--data", required=True, help="path to the .npz file")
    falls.add_argument("--json", action="store_true", help="last line: one JSON object")
    falls.set_defaults(func=cmd_eval_falls)
    add_inactivity_eval(ev)  # kit: safehome eval inactivity

    sim = sub.add_parser("simulate", help="simulated devices of a site manifest")
    sim.add_argument("--manifest", required=True, help="site manifest JSON (with credentials)")
    sim.add_argument("--scenario", help="scripted incidents (TOML or JSON)")
    sim.add_argument(
        "--scenario-default", action="store_true", help="use the built-in incident timeline"
    )
    sim.add_argument("--duration", type=float, default=None, help="seconds (default: until ^C)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--heartbeat", type=float, default=300.0, help="heartbeat interval, s")
    sim.add_argument("--rate", type=float, default=1.0, help="stream messages/s per device")
    sim.add_argument("--record", help="write every published message here (replay format)")
    sim.add_argument("--json", action="store_true", help="print the full report as JSON")
    sim.set_defaults(func=cmd_simulate)

    replay = sub.add_parser("replay", help="replay a recording through the analysis (no DB)")
    replay.add_argument("file", help="recording: JSON lines {topic, payload, received_at}")
    replay.add_argument("--manifest", help="site manifest (device kinds, residents, locations)")
    replay.add_argument("--json", action="store_true", help="JSON lines; last line: summary")
    replay.add_argument("--tail", type=float, default=None, help="seconds to run on after the end")
    replay.set_defaults(func=cmd_replay)

    demo = sub.add_parser("demo", help="set up and run the whole product on a simulated site")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.set_defaults(func=cmd_demo)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_cmd", required=True
    )
    audit.add_parser(
        "verify", help="walk the hash chain; exit 1 at the first broken entry"
    ).set_defaults(func=cmd_audit_verify)

    report = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_cmd", required=True
    )
    sla = report.add_parser("sla", help="monthly SLA report of one site (answer times, uptime)")
    sla.add_argument("--site", required=True, help="site id")
    sla.add_argument("--month", required=True, help="local calendar month, YYYY-MM")
    sla.add_argument("--csv", help="write incidents here and the KPIs to <stem>-kpis.csv")
    sla.add_argument("--png", help="write the answer-time chart here (PNG)")
    sla.add_argument("--json", action="store_true", help="print JSON instead of the table")
    sla.add_argument("--lang", choices=("zh-CN", "en"), default="zh-CN",
                     help="language of the table and the chart (default zh-CN)")  # fmt: skip
    sla.set_defaults(func=cmd_report_sla)

    user = sub.add_parser("user", help="API users").add_subparsers(dest="user_cmd", required=True)
    uadd = user.add_parser("add", help="create a user (password read from stdin or a prompt)")
    uadd.add_argument("--username", required=True)
    uadd.add_argument(
        "--role",
        required=True,
        choices=[
            "duty_staff",
            "supervisor",
            "family",
            "installer",
            "admin",
            "community_worker",
            "district_supervisor",
        ],
    )
    uadd.add_argument("--site", help="site id (duty staff, supervisors and installers)")
    uadd.add_argument("--resident", action="append", help="linked resident id (family; repeat)")
    uadd.set_defaults(func=cmd_user_add)
    for name, text in [
        ("deactivate", "block sign-in and end every session of a user (audited)"),
        ("reactivate", "allow a deactivated user to sign in again (audited)"),
        ("passwd", "set a user's password (stdin or prompt); ends their sessions (audited)"),
    ]:
        manage = user.add_parser(name, help=text)
        manage.add_argument("user", help="user id or sign-in name")
        manage.set_defaults(func=cmd_user_manage)
    unlock = user.add_parser("unlock", help="end a sign-in lockout (failed passwords; audited)")
    unlock.add_argument("user", help="user id or sign-in name")
    unlock.set_defaults(func=cmd_user_unlock)
    from gateway.cli_paging import add_channel_commands

    add_channel_commands(user)
    from gateway.cli_people import add_people_commands

    add_people_commands(user)
    from gateway.telephony.cli import add_phone_commands  # click-to-call numbers

    add_phone_commands(user)

    from gateway.cli_roster import add_roster_commands

    add_roster_commands(sub)
    from gateway.cli_district import add_district_commands

    add_district_commands(sub)  # safehome district list|assign-site|assign-user|report

    from gateway.cli_deploy import add_deploy_commands

    add_deploy_commands(sub)
    from gateway.platform.cli import add_platform_commands

    add_platform_commands(sub)

    # The installer's commands (HTTP clients of the gateway API): login, site list/show/
    # create/edit, location, bed, resident, import, label, device, commissioning, status,
    # completion.
    from gateway.installer.parser import register as register_installer

    register_installer(sub, site)
    parser.set_defaults(command_tree=parser)  # for ``safehome completion``
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        configure_logging("INFO", "text")
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"safehome: {exc}", file=sys.stderr)
        return 2
    except SafehomeError as exc:  # a domain error: its kind gives the exit code
        print(f"safehome: {exc.detail}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return int(exit_code(exc))
    except psycopg.OperationalError as exc:
        print(f"safehome: database unreachable: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
