"""The installer commands (``safehome login``, ``bed``, ``device test``, ...): the table
:data:`COMMANDS` and :func:`run`.

Each command is a function ``(ctx, args) -> exit code``, named in :data:`COMMANDS` (the
parser refers to commands by these names, so that their modules load only when one runs);
:func:`run` builds the context, catches every expected failure and turns it into
``error:``/``hint:`` lines and an exit code (:class:`gateway.installer.client.Exit`, the
one mapping of failures to exit codes). The sign-in, status and completion commands are
here; the registry's in :mod:`~gateway.installer.cmd_registry`, the devices' in
:mod:`~gateway.installer.cmd_devices`. The API is ``docs/installer-api.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.live import Live
from rich.table import Table

from gateway.installer import cmd_devices as dev
from gateway.installer import cmd_registry as reg
from gateway.installer import labels as lbl
from gateway.installer.client import LOGIN_HINT, ApiClient, CliError, Exit
from gateway.installer.completion import script
from gateway.installer.config import (
    ConfigError,
    forget_token,
    load_token,
    save_gateway,
    save_token,
    token_from_response,
)
from gateway.installer.context import Ctx, local_time
from gateway.installer.output import ago, cell, escape

# httpx logs every request URL at INFO; URLs carry codes and the CLI's output is enough.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

INSTALLER_ROLES = ("installer", "admin")
Command = Callable[[Ctx, argparse.Namespace], int]


# -- sign-in -----------------------------------------------------------------------------


def cmd_login(ctx: Ctx, args: argparse.Namespace) -> int:
    url = ctx.gateway.url
    user = args.user
    if not user:
        if not sys.stdin.isatty() or args.password_stdin:
            raise CliError("no user name", "add --user NAME", Exit.USAGE)
        user = input("user: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {user} at {url}: ")
    else:
        raise CliError(
            "no terminal to ask for the password", "pipe it in with --password-stdin", Exit.USAGE
        )
    if not password:
        raise CliError("empty password", code=Exit.USAGE)
    with ApiClient(url, on_retry=lambda m: ctx.out.err.print(f"… {m}")) as client:
        answer = client.sign_in(user, password)
    token = token_from_response(url, user, answer)
    if token.role not in INSTALLER_ROLES:
        raise CliError(
            f"this account is a {token.role} account; installer commands need an installer "
            "or admin account",
            "ask an administrator: safehome user add --role installer --site SITE ...",
            Exit.FORBIDDEN,
        )
    save_token(token, ctx.directory)
    save_gateway(url, ctx.directory)
    site = f", site {token.site}" if token.site else ""
    ctx.out.done(
        f"signed in to {url} as {user} ({token.role}{site}) until {local_time(token.expires_at)}",
        token.public(),
    )
    return 0


def cmd_logout(ctx: Ctx, args: argparse.Namespace) -> int:
    token = load_token(ctx.directory)
    if token is not None and not token.expired():
        # End the session at the gateway too (its tokens stop working at once); a gateway
        # out of reach does not keep the local sign-in: the session then ends by itself.
        with contextlib.suppress(CliError), ApiClient(token.gateway, token, retries=0) as c:
            c.send("POST", "/auth/logout")
    had = forget_token(ctx.directory)
    ctx.out.done("signed out" if had else "was not signed in", {"signed_out": had})
    return 0


def cmd_whoami(ctx: Ctx, args: argparse.Namespace) -> int:
    token = load_token(ctx.directory)
    if token is None:
        raise CliError("you are not signed in", LOGIN_HINT, Exit.AUTH)
    info = token.public()
    info["gateway_in_use"] = ctx.gateway.url
    info["gateway_from"] = ctx.gateway.source
    # An expired access token is renewed on the next command while the session lasts.
    over = token.expired() and not token.renewable()
    info["expired"] = over
    info["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(token.expires_at))
    if token.session_expires_at is not None:
        end = time.localtime(token.session_expires_at)
        info["session_expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", end)
    ctx.out.record(info)
    if over:
        raise CliError("your sign-in has expired", LOGIN_HINT, Exit.AUTH)
    return 0


# -- status ------------------------------------------------------------------------------


def _status_table(rows: list[Mapping[str, Any]], title: str, note: str | None) -> Table:
    table = Table(title=title, caption=note, header_style="bold")
    for col in ("device", "kind", "bed", "location", "state", "seen", "batt", "rssi", "fw",
                "last test"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        online = r.get("online")
        last = r.get("last_commissioning") or {}
        result = last.get("result") if isinstance(last, Mapping) else None
        battery = r.get("battery")
        rssi = r.get("rssi", r.get("signal"))
        table.add_row(
            str(r.get("device_id")), str(r.get("kind", "")), cell(r.get("bed_code")),
            escape(cell(r.get("location_label", r.get("location")))),
            "[green]online[/]" if online else "[red]OFFLINE[/]",
            ago(r.get("last_seen")),
            "-" if battery is None else f"{battery}%",
            "-" if rssi is None else f"{rssi} dBm",
            cell(r.get("firmware")),
            "-" if not result else
            f"[{'green' if result == 'passed' else 'red'}]{result}[/] {ago(last.get('at'))}",
        )  # fmt: skip
    return table


def cmd_status(ctx: Ctx, args: argparse.Namespace) -> int:
    params = {"site": args.site, "location": args.location, "bed": args.bed,
              "device": args.device}  # fmt: skip
    scope = next((f"{k} {v}" for k, v in params.items() if v), f"site {ctx.token.site or 'all'}")

    def fetch() -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = ctx.api.get("/status", **params)
        return rows

    rows = fetch()
    if args.device and not rows:
        raise CliError(f"no device {args.device}", "check the id: safehome device list",
                       Exit.NOT_FOUND)  # fmt: skip
    if not args.watch:
        if ctx.out.as_json:
            ctx.out.json(rows)
        else:
            ctx.out.out.print(_status_table(rows, f"status of {scope}", None))
        return 0
    try:
        _watch(ctx, args, rows, fetch, scope)
    except KeyboardInterrupt:  # the normal end of a watch
        return 0
    return 0


def _watch(
    ctx: Ctx,
    args: argparse.Namespace,
    rows: list[Mapping[str, Any]],
    fetch: Callable[[], list[Mapping[str, Any]]],
    scope: str,
) -> None:
    if ctx.out.as_json:  # one JSON document per line per refresh
        while True:
            sys.stdout.write(json.dumps(rows, default=str) + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
            rows = _refresh(fetch, rows)[0]
    with Live(_status_table(rows, f"status of {scope}", None), console=ctx.out.out,
              refresh_per_second=2) as live:  # fmt: skip
        while True:
            time.sleep(args.interval)
            rows, note = _refresh(fetch, rows)
            stamp = time.strftime("%H:%M:%S")
            live.update(_status_table(rows, f"status of {scope} at {stamp} (Ctrl-C stops)",
                                      note))  # fmt: skip


def _refresh(
    fetch: Callable[[], list[Mapping[str, Any]]], last: list[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], str | None]:
    """New rows, or the last ones with a note when the gateway cannot be reached (watching
    over a flaky hotspot should not end the watch)."""
    try:
        return fetch(), None
    except CliError as err:
        if err.code is not Exit.UNREACHABLE:
            raise
        return last, f"{err.message} at {time.strftime('%H:%M:%S')}; showing the last answer"


# -- completion --------------------------------------------------------------------------


def cmd_completion(ctx: Ctx, args: argparse.Namespace) -> int:
    # The whole ``safehome`` tree, put on the arguments by ``gateway.cli.build_parser``.
    sys.stdout.write(script(args.command_tree, args.shell))
    return 0


# -- dispatch ----------------------------------------------------------------------------

COMMANDS: Mapping[str, Command] = {
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
    **reg.CRUD_COMMANDS,
    "import_csv": reg.cmd_import_csv,
    "label_beds": reg.cmd_label_beds,
    "label_devices": reg.cmd_label_devices,
    "device_list": dev.cmd_device_list,
    "device_register": dev.cmd_device_register,
    "device_show": dev.cmd_device_show,
    "device_rotate": dev.cmd_device_rotate,
    "device_decommission": dev.cmd_device_decommission,
    "device_bind": dev.cmd_device_bind,
    "device_unbind": dev.cmd_device_unbind,
    "device_replace": dev.cmd_device_replace,
    "device_test": dev.cmd_device_test,
    "commissioning_list": dev.cmd_commissioning_list,
    "commissioning_export": dev.cmd_commissioning_export,
    "status": cmd_status,
    "completion": cmd_completion,
}


def run(name: str, args: argparse.Namespace) -> int:
    """Run the command ``name`` of :data:`COMMANDS`; turn failures into messages and exit
    codes."""
    func = COMMANDS[name]
    ctx = Ctx(args)
    try:
        return func(ctx, args)
    except CliError as err:
        ctx.out.error(err)
        return int(err.code)
    except (ConfigError, lbl.LabelError) as exc:
        ctx.out.error(CliError(str(exc), code=Exit.USAGE))
        return int(Exit.USAGE)
    except KeyboardInterrupt:
        ctx.out.err.print("interrupted")
        return 130
    finally:
        ctx.close()
