"""The bodies of the installer commands (``safehome login``, ``bed``, ``device test``, ...).

Each command is ``cmd_<name>(ctx, args) -> exit code``; :func:`run` builds the context,
catches every expected failure and turns it into ``error:``/``hint:`` lines and an exit
code (:class:`gateway.installer.client.Exit`). The API is ``docs/installer-api.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from gateway.installer import labels as lbl
from gateway.installer.client import LOGIN_HINT, ApiClient, CliError, Exit
from gateway.installer.completion import script
from gateway.installer.config import (
    CachedToken,
    ConfigError,
    GatewayUrl,
    config_dir,
    forget_token,
    load_token,
    resolve_gateway,
    save_gateway,
    save_token,
    token_from_response,
    write_private,
)
from gateway.installer.csvcheck import RowError, check_csv
from gateway.installer.output import Output, ago, cell, escape

# httpx logs every request URL at INFO; URLs carry codes and the CLI's output is enough.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

INSTALLER_ROLES = ("installer", "admin")
POLL_S = 0.5


def _q(value: str) -> str:
    """A path segment (codes are safe, but never build a path from raw input)."""
    return quote(value, safe="")


class Ctx:
    """What a command works with: output, config directory, gateway URL, token, client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(as_json=bool(getattr(args, "json", False)))
        self.directory = config_dir()
        self._gateway: GatewayUrl | None = None
        self._client: ApiClient | None = None
        self._token: CachedToken | None = None

    @property
    def gateway(self) -> GatewayUrl:
        if self._gateway is None:
            self._gateway = resolve_gateway(getattr(self.args, "gateway", None))
        return self._gateway

    @property
    def token(self) -> CachedToken:
        """The cached token, checked: present, unexpired and issued by this gateway."""
        if self._token is None:
            token = load_token(self.directory)
            if token is None:
                raise CliError("you are not signed in", LOGIN_HINT, Exit.AUTH)
            if token.gateway != self.gateway.url:
                raise CliError(
                    f"you are signed in to {token.gateway}, not {self.gateway.url}",
                    f"run: safehome login --gateway {self.gateway.url}",
                    Exit.AUTH,
                )
            self._token = token
            if token.expired():
                self._token = self._refreshed(token)
        return self._token

    def _refreshed(self, token: CachedToken) -> CachedToken:
        """A new access token for the session (refresh token rotated, cache rewritten);
        :class:`CliError` when the session is over."""
        expired = CliError(
            f"your sign-in expired at {_local(token.expires_at)}", LOGIN_HINT, Exit.AUTH
        )
        if not token.renewable() or token.refresh_token is None:
            raise expired
        with ApiClient(self.gateway.url, on_retry=lambda m: self.out.err.print(f"… {m}")) as c:
            try:
                answer = c.refresh(token.refresh_token)
            except CliError as exc:
                if exc.code is Exit.AUTH:
                    forget_token(self.directory)  # spent or revoked: useless from now on
                    raise expired from None
                raise
        fresh = token_from_response(token.gateway, token.username, answer)
        save_token(fresh, self.directory)
        return fresh

    def _refresh_now(self) -> str | None:
        """The ApiClient's hook on a 401: renew once; None when the session is over."""
        if self._token is None:
            return None
        try:
            self._token = self._refreshed(self._token)
        except CliError:
            return None
        return self._token.access_token

    @property
    def api(self) -> ApiClient:
        """An authenticated client of the gateway (renews its token on the way)."""
        if self._client is None:
            self._client = ApiClient(
                self.gateway.url, self.token, on_retry=lambda m: self.out.err.print(f"… {m}"),
                refresher=self._refresh_now,
            )  # fmt: skip
        return self._client

    def site(self) -> str:
        """``--site``, else the site of the signed-in installer."""
        site = getattr(self.args, "site", None) or self.token.site
        if not site:
            raise CliError(
                "which site? your account is not tied to one", "add --site SITE", Exit.USAGE
            )
        return str(site)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _local(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``cmd_<name>``; turn failures into messages and exit codes."""
    func: Callable[[Ctx, argparse.Namespace], int] = globals()[f"cmd_{name}"]
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


def _fields(**values: Any) -> dict[str, Any]:
    """The values that were given (for PATCH bodies)."""
    body = {k: v for k, v in values.items() if v is not None}
    if not body:
        raise CliError("nothing to change", "give at least one option (see --help)", Exit.USAGE)
    return body


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
        f"signed in to {url} as {user} ({token.role}{site}) until {_local(token.expires_at)}",
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


# -- sites, locations, beds, residents ----------------------------------------------------

SITE_COLS = ["site_id", "name", "kind", "utc_offset_s"]
LOCATION_COLS = ["location_id", "kind", "label", "address"]
BED_COLS: list[str | tuple[str, str]] = [
    "bed_code",
    "bed_id",
    "location_id",
    ("elder_code", "resident"),
]
RESIDENT_COLS = ["elder_code", "resident_id", "care_level", "bed_code", "lives_alone",
                 "high_risk"]  # fmt: skip
DEVICE_COLS: list[str | tuple[str, str]] = [
    ("device_id", "device"),
    "kind",
    "model",
    ("location_label", "location"),
    ("bed_code", "bed"),
    ("elder_code", "resident"),
    "active",
    "online",
]


def cmd_site_list(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.table(ctx.api.get("/sites"), SITE_COLS, title="sites")
    return 0


def cmd_site_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/sites/{_q(args.site_id)}"))
    return 0


def cmd_site_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"site_id": args.site_id, "name": args.name, "kind": args.kind}
    if args.utc_offset is not None:
        body["utc_offset_s"] = args.utc_offset
    site = ctx.api.post("/sites", body)
    ctx.out.done(f"site {args.site_id} created", site)
    return 0


def cmd_site_edit(ctx: Ctx, args: argparse.Namespace) -> int:
    body = _fields(name=args.name, utc_offset_s=args.utc_offset)
    site = ctx.api.patch(f"/sites/{_q(args.site_id)}", body)
    ctx.out.done(f"site {args.site_id} updated", site)
    return 0


def cmd_location_list(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = ctx.api.get(f"/sites/{_q(ctx.site())}/locations")
    ctx.out.table(rows, LOCATION_COLS, title=f"locations of {ctx.site()}")
    return 0


def cmd_location_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/locations/{_q(args.location_id)}"))
    return 0


def cmd_location_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"location_id": args.location_id, "kind": args.kind, "label": args.label}
    if args.address:
        body["address"] = args.address
    loc = ctx.api.post(f"/sites/{_q(ctx.site())}/locations", body)
    ctx.out.done(f"location {args.location_id} created", loc)
    return 0


def cmd_location_edit(ctx: Ctx, args: argparse.Namespace) -> int:
    body = _fields(label=args.label, address=args.address)
    loc = ctx.api.patch(f"/locations/{_q(args.location_id)}", body)
    ctx.out.done(f"location {args.location_id} updated", loc)
    return 0


def cmd_bed_list(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = ctx.api.get(f"/sites/{_q(ctx.site())}/beds")
    ctx.out.table(rows, BED_COLS, title=f"beds of {ctx.site()}")
    return 0


def cmd_bed_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/beds/{_q(args.bed)}"))
    return 0


def cmd_bed_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"bed_code": args.bed_code, "location_id": args.location}
    if args.bed_id:
        body["bed_id"] = args.bed_id
    bed = ctx.api.post(f"/sites/{_q(ctx.site())}/beds", body)
    ctx.out.done(f"bed {args.bed_code} created", bed)
    return 0


def cmd_bed_edit(ctx: Ctx, args: argparse.Namespace) -> int:
    body = _fields(location_id=args.location, bed_code=args.new_code)
    bed = ctx.api.patch(f"/beds/{_q(args.bed)}", body)
    ctx.out.done(f"bed {args.bed} updated", bed)
    return 0


def cmd_resident_list(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = ctx.api.get(f"/sites/{_q(ctx.site())}/residents")
    ctx.out.table(rows, RESIDENT_COLS, title=f"residents of {ctx.site()}")
    return 0


def cmd_resident_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/residents/{_q(args.resident)}/registry"))
    return 0


def cmd_resident_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "elder_code": args.elder_code,
        "display_name": args.name,
        "care_level": args.care_level,
        "lives_alone": args.lives_alone,
        "high_risk": args.high_risk,
    }
    if args.bed:
        body["bed_code"] = args.bed
    if args.resident_id:
        body["resident_id"] = args.resident_id
    res = ctx.api.post(f"/sites/{_q(ctx.site())}/residents", body)
    ctx.out.done(f"resident {args.elder_code} created", res)
    return 0


def cmd_resident_edit(ctx: Ctx, args: argparse.Namespace) -> int:
    body = _fields(
        display_name=args.name, care_level=args.care_level, bed=args.bed,
        lives_alone=args.lives_alone, high_risk=args.high_risk,
    )  # fmt: skip
    res = ctx.api.patch(f"/residents/{_q(args.resident)}", body)
    ctx.out.done(f"resident {args.resident} updated", res)
    return 0


# -- CSV import --------------------------------------------------------------------------


def _print_row_errors(ctx: Ctx, path: str, errors: list[RowError], rows: int) -> None:
    table = Table(title=f"{path}: {len(errors)} problem(s) in {rows} row(s)", header_style="bold")
    table.add_column("line", justify="right")
    table.add_column("column")
    table.add_column("problem")
    for e in errors:
        table.add_row(str(e.line), e.column or "", escape(e.message))
    ctx.out.err.print(table)


def _server_errors(body: Any) -> list[RowError]:
    errors = body.get("errors") if isinstance(body, dict) else None
    out = []
    for e in errors or []:
        if isinstance(e, dict):
            out.append(RowError(int(e.get("line") or 0), str(e.get("message", "")),
                                e.get("column")))  # fmt: skip
    return out


def _chunks(
    data: bytes, progress: Progress, task: Any, after: str, size: int = 16384
) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        yield chunk
        progress.advance(task, len(chunk))
    progress.update(task, description=after)


def _import(ctx: Ctx, kind: str, body: bytes, *, dry_run: bool, progress: Progress | None) -> Any:
    path = f"/sites/{_q(ctx.site())}/import/{kind}"
    params = {"dry_run": "true" if dry_run else "false"}
    headers = {"Content-Type": "text/csv; charset=utf-8"}
    content: bytes | Iterator[bytes] = body
    if progress is not None:
        task = progress.add_task("uploading", total=len(body))
        content = _chunks(body, progress, task, f"the gateway is applying the {kind}")
    try:
        resp = ctx.api.send("POST", path, params=params, content=content, headers=headers)
    except CliError as err:
        if err.code is Exit.USAGE and isinstance(err.body, dict) and "errors" in err.body:
            return err.body
        raise
    return resp.json()


def _merge(local: list[RowError], remote: list[RowError]) -> list[RowError]:
    """Every problem once: the local ones, plus the gateway's for lines not already
    reported (it also knows what exists: locations, beds, codes in use)."""
    seen = {e.line for e in local}
    return sorted([*local, *(e for e in remote if e.line not in seen)], key=lambda e: e.line)


def cmd_import_csv(ctx: Ctx, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", code=Exit.USAGE) from None
    local = check_csv(args.kind, data)
    structural = any(e.line == 1 for e in local.errors) or not local.text
    checked: Any = None
    note = None
    if not structural:  # the gateway's dry run, even with local errors: report every bad row
        try:
            checked = _import(ctx, args.kind, local.text.encode("utf-8"), dry_run=True,
                              progress=None)  # fmt: skip
        except CliError as err:
            if not local.errors or err.code not in (Exit.UNREACHABLE, Exit.AUTH):
                raise
            note = f"the gateway did not check the file ({err.message})"
    errors = _merge(local.errors, _server_errors(checked))
    rows = int(checked.get("rows", local.rows)) if isinstance(checked, dict) else local.rows
    if errors:
        if ctx.out.as_json:
            ctx.out.json({"dry_run": True, "rows": rows, "created": 0, "updated": 0,
                          "errors": [e.to_json() for e in errors]})  # fmt: skip
        else:
            _print_row_errors(ctx, str(path), errors, rows)
        if note:
            ctx.out.warn(note)
        raise CliError(
            f"{len(errors)} problem(s) in {path}; nothing was written",
            "fix the lines above and run the command again", Exit.USAGE,
        )  # fmt: skip
    if args.dry_run:
        ctx.out.done(
            f"{path}: {rows} row(s) OK; would create {checked.get('created', 0)} and update "
            f"{checked.get('updated', 0)} (nothing written)",
            checked,
        )
        return 0
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TimeElapsedColumn(), console=ctx.out.err, transient=True, disable=ctx.out.as_json,
    )  # fmt: skip
    with progress:
        result = _import(ctx, args.kind, local.text.encode("utf-8"), dry_run=False,
                         progress=progress)  # fmt: skip
    errors = _server_errors(result)
    if errors:  # someone changed the site between the dry run and now
        if not ctx.out.as_json:
            _print_row_errors(ctx, str(path), errors, rows)
        raise CliError(f"{len(errors)} problem(s); nothing was written", code=Exit.USAGE)
    ctx.out.done(
        f"{path}: {result.get('rows', rows)} {args.kind} imported "
        f"({result.get('created', 0)} created, {result.get('updated', 0)} updated)",
        result,
    )
    return 0


# -- labels ------------------------------------------------------------------------------


def _write_labels(ctx: Ctx, labels: list[lbl.Label], out: str) -> int:
    paths = lbl.write_labels(labels, Path(out))
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    ctx.out.done(
        f"{len(labels)} label(s): {len(paths) - len(pdfs)} PNG(s), sheet {pdfs[0]}",
        {"labels": len(labels), "files": [str(p) for p in paths]},
    )
    return 0


def cmd_label_beds(ctx: Ctx, args: argparse.Namespace) -> int:
    codes = list(args.codes)
    if not codes:
        codes = [str(b["bed_code"]) for b in ctx.api.get(f"/sites/{_q(ctx.site())}/beds")]
        if not codes:
            raise CliError("the site has no beds yet", "create or import beds first", Exit.USAGE)
    return _write_labels(ctx, [lbl.Label(c, "BED") for c in codes], args.out)


def cmd_label_devices(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.codes:
        labels = [lbl.Label(c, "DEVICE") for c in args.codes]
    else:
        rows = ctx.api.get("/devices", site=ctx.site())
        labels = [lbl.Label(str(d["device_id"]), f"DEVICE {d.get('kind', '')}".strip())
                  for d in rows if d.get("active", True)]  # fmt: skip
        if not labels:
            raise CliError("the site has no active devices", "register devices first", Exit.USAGE)
    return _write_labels(ctx, labels, args.out)


# -- devices -----------------------------------------------------------------------------


def _show_config(ctx: Ctx, args: argparse.Namespace, result: Mapping[str, Any], what: str) -> None:
    """Print a device configuration: once, as JSON and as a QR code."""
    config = result.get("config")
    if not isinstance(config, dict):
        raise CliError("the gateway's answer has no device configuration", code=Exit.FAILED)
    text = json.dumps(config, separators=(",", ":"), ensure_ascii=False)
    if args.config_out:
        write_private(Path(args.config_out), json.dumps(config, indent=2) + "\n")
    if args.qr_out:
        qr_path = Path(args.qr_out)
        lbl.config_qr_png(text, qr_path)  # created 0600
    if ctx.out.as_json:
        ctx.out.json(result)
    else:
        ctx.out.out.print(f"[green]✓[/] {escape(what)}")
        ctx.out.out.print("device configuration:")
        sys.stdout.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        if not args.no_qr:
            ctx.out.out.print("scan with the device's set-up app:")
            sys.stdout.write(lbl.terminal_qr(text) + "\n")
            sys.stdout.flush()
    saved = [p for p in (args.config_out, args.qr_out) if p]
    ctx.out.warn(
        "this configuration holds the device's MQTT password and will NOT be shown again"
        + (f" (saved to {', '.join(saved)}, mode 0600)" if saved else "")
        + "; lost: safehome device rotate "
        + str(config.get("device_id", "DEVICE"))
    )


def cmd_device_list(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = ctx.api.get("/devices", site=ctx.site(), location=args.location, bed=args.bed)
    ctx.out.table(rows, DEVICE_COLS, title=f"devices of {ctx.site()}")
    return 0


def cmd_device_register(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"kind": args.kind, "model": args.model, "serial": args.serial}
    for key, value in (("device_id", args.device_id), ("firmware", args.firmware),
                       ("heartbeat_interval_s", args.heartbeat), ("hub_id", args.hub)):  # fmt: skip
        if value is not None:
            body[key] = value
    result = ctx.api.post(f"/sites/{_q(ctx.site())}/devices", body)
    device_id = result.get("device", {}).get("device_id") or result["config"].get("device_id")
    _show_config(ctx, args, result, f"device {device_id} registered ({args.kind})")
    return 0


def cmd_device_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/devices/{_q(args.device_id)}"))
    return 0


def cmd_device_rotate(ctx: Ctx, args: argparse.Namespace) -> int:
    result = ctx.api.post(f"/devices/{_q(args.device_id)}/credentials/rotate")
    _show_config(ctx, args, result, f"device {args.device_id}: new password")
    return 0


def _confirm(ctx: Ctx, question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError("confirmation needed", "add --yes to confirm", Exit.USAGE)
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CliError("cancelled", code=Exit.USAGE)


def cmd_device_decommission(ctx: Ctx, args: argparse.Namespace) -> int:
    _confirm(ctx, f"decommission {args.device_id}? The broker will refuse it from now on.",
             args.yes)  # fmt: skip
    body = {"reason": args.reason} if args.reason else {}
    device = ctx.api.post(f"/devices/{_q(args.device_id)}/decommission", body)
    ctx.out.done(f"device {args.device_id} decommissioned; its credentials are revoked", device)
    return 0


def cmd_device_bind(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("bed", args.bed), ("resident", args.resident),
                              ("location_id", args.location)) if v}  # fmt: skip
    if not body:
        raise CliError("bind to what?", "add --bed CODE and/or --resident CODE", Exit.USAGE)
    device = ctx.api.post(f"/devices/{_q(args.device_id)}/bind", body)
    target = " and ".join(f"{k.removesuffix('_id')} {v}" for k, v in body.items())
    ctx.out.done(f"device {args.device_id} bound to {target}", device)
    return 0


def cmd_device_unbind(ctx: Ctx, args: argparse.Namespace) -> int:
    device = ctx.api.post(f"/devices/{_q(args.device_id)}/unbind")
    ctx.out.done(f"device {args.device_id} unbound", device)
    return 0


def cmd_device_replace(ctx: Ctx, args: argparse.Namespace) -> int:
    given = (("serial", args.serial), ("model", args.model), ("device_id", args.new_id),
             ("firmware", args.firmware))  # fmt: skip
    body = {k: v for k, v in given if v}
    result = ctx.api.post(f"/devices/{_q(args.device_id)}/replace", body)
    new_id = result.get("new", {}).get("device_id") or result["config"].get("device_id")
    _show_config(
        ctx, args, result,
        f"device {args.device_id} replaced by {new_id}: binding, history and open incidents "
        f"stay with the resident; {args.device_id} is decommissioned",
    )  # fmt: skip
    return 0


# -- acceptance test ---------------------------------------------------------------------

STEP_STYLE = {"passed": "green", "failed": "red", "waiting": "yellow"}


def _test_view(state: Mapping[str, Any], remaining_s: float | None) -> Group:
    """The live view of a test: what to do now, then the steps."""
    prompt = _prompt_line(state) if state.get("status", "running") == "running" else None
    head = Text(f"▶ {prompt}" if prompt else "", style="bold magenta")
    return Group(head, _step_table(state, remaining_s))


def _step_table(state: Mapping[str, Any], remaining_s: float | None) -> Table:
    status = str(state.get("status", "running"))
    left = f" — {remaining_s:.0f}s left" if remaining_s is not None and status == "running" else ""
    table = Table(
        title=f"acceptance test {state.get('test_id', '')} of {state.get('device_id', '')}"
        f" ({state.get('kind', '')}): {status}{left}",
        caption="TEST MODE: detections raise no incident and page nobody",
        header_style="bold",
    )
    for col in ("step", "do this", "result", "latency", "seen"):
        table.add_column(col)
    for step in state.get("steps", []):
        st = str(step.get("status", "waiting"))
        latency = step.get("latency_ms")
        table.add_row(
            str(step.get("name", "")),
            escape(str(step.get("prompt", ""))),
            f"[{STEP_STYLE.get(st, 'white')}]{st}[/]",
            "-" if latency is None else f"{latency:.0f} ms",
            escape(_seen(step.get("observed"))),
        )
    notified = state.get("family_notified")
    table.add_row("family page", "", "[red]SENT[/]" if notified else "[green]none[/]", "", "")
    return table


def _seen(observed: Any) -> str:
    """What the gateway saw for a step: when it arrived, and the values that matter."""
    if not isinstance(observed, Mapping) or not observed:
        return "-"
    parts = []
    arrived = observed.get("received_at")
    if isinstance(arrived, str):
        parts.append("arrived " + cell(arrived)[11:])
    for key in ("event", "reading", "presence", "worn", "heart_rate", "breathing_rate",
                "peak_g", "family_notified"):  # fmt: skip
        if key in observed:
            parts.append(f"{key}={cell(observed[key])}")
    return ", ".join(parts)


def _settled(state: Mapping[str, Any]) -> bool:
    """Whether polling can stop: the test ended, or no step is still waiting (the button's
    ``no_page`` step counts as settled while no family member has been notified)."""
    if state.get("status", "running") != "running":
        return True
    steps = state.get("steps", [])
    for step in steps:
        if step.get("status") == "failed":
            return True
    waiting = [s for s in steps if s.get("status", "waiting") == "waiting"]
    return all(s.get("name") == "no_page" and not state.get("family_notified") for s in waiting)


def _prompt_line(state: Mapping[str, Any]) -> str | None:
    for step in state.get("steps", []):
        if step.get("status", "waiting") == "waiting" and step.get("name") != "no_page":
            return str(step.get("prompt") or step.get("name"))
    return None


def cmd_device_test(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.abort:
        return _abort_test(ctx, args)
    body = {"timeout_s": args.timeout} if args.timeout else {}
    started = ctx.api.post(f"/devices/{_q(args.device_id)}/acceptance", body)
    test_id = str(started["test_id"])
    timeout = args.timeout or _seconds_between(started.get("started_at"), started.get("expires_at"))
    deadline = time.monotonic() + (timeout or 300.0)
    state: Mapping[str, Any] = started
    live_ok = ctx.out.interactive and not args.non_interactive and not ctx.out.as_json
    ctx.out.info(
        f"test {test_id} started: {args.device_id} is in TEST MODE (no incident, no family "
        "page) until the test ends"
    )
    announced: set[str] = set()
    try:
        if live_ok:
            with Live(
                _step_table(state, timeout), console=ctx.out.out, refresh_per_second=4
            ) as live:
                while not _settled(state) and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                    state = ctx.api.get(f"/acceptance/{_q(test_id)}")
                    prompt = _prompt_line(state)
                    if prompt and prompt not in announced:
                        announced.add(prompt)
                        live.console.print(f"[bold magenta]▶ {escape(prompt)}[/]")
                    live.update(_test_view(state, deadline - time.monotonic()))
        else:
            reported: set[str] = set()
            while True:
                prompt = _prompt_line(state)
                if prompt and prompt not in announced:
                    announced.add(prompt)
                    ctx.out.info(f"▶ {prompt}")
                for step in state.get("steps", []):
                    st, name = step.get("status", "waiting"), str(step.get("name"))
                    if st != "waiting" and name not in reported:
                        reported.add(name)
                        lat = step.get("latency_ms")
                        ctx.out.info(f"  {name}: {st}" + (f", {lat:.0f} ms" if lat else ""))
                if _settled(state) or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
                state = ctx.api.get(f"/acceptance/{_q(test_id)}")
    except KeyboardInterrupt:
        notes = args.notes or "aborted by the installer"
        record = ctx.api.post(f"/acceptance/{_q(test_id)}/finish", {"abort": True, "notes": notes})
        _show_record(ctx, record)
        return int(Exit.TEST_FAILED)
    if state.get("finished_at"):  # ended elsewhere (safehome device test D --abort)
        raise CliError(
            f"test {test_id} was ended elsewhere: {state.get('status')}",
            "see the record: safehome commissioning list", Exit.TEST_FAILED,
        )  # fmt: skip
    finish: dict[str, Any] = {"notes": args.notes} if args.notes else {}
    record = ctx.api.post(f"/acceptance/{_q(test_id)}/finish", finish)
    _show_record(ctx, record)
    if record.get("result") != "passed":
        raise CliError(
            f"acceptance test of {args.device_id}: {record.get('result')}",
            "check the failed or missing steps above, then run: safehome device test "
            f"{args.device_id}",
            Exit.TEST_FAILED,
        )
    return 0


def _abort_test(ctx: Ctx, args: argparse.Namespace) -> int:
    device = ctx.api.get(f"/devices/{_q(args.device_id)}")
    test_id = device.get("running_test")
    if not test_id:
        raise CliError(f"device {args.device_id} has no acceptance test running",
                       code=Exit.NOT_FOUND)  # fmt: skip
    notes = args.notes or "aborted by the installer"
    record = ctx.api.post(f"/acceptance/{_q(str(test_id))}/finish", {"abort": True, "notes": notes})
    _show_record(ctx, record)
    return 0


def _seconds_between(start: Any, end: Any) -> float | None:
    from datetime import datetime  # noqa: PLC0415 (one call per test)

    try:
        return (
            datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
        ).total_seconds()
    except ValueError:
        return None


def _show_record(ctx: Ctx, record: Mapping[str, Any]) -> None:
    if ctx.out.as_json:
        ctx.out.json(record)
        return
    result = str(record.get("result"))
    colour = "green" if result == "passed" else "red"
    ctx.out.out.print(
        f"[bold {colour}]commissioning record {record.get('record_id')}: {result}[/] — device "
        f"{record.get('device_id')} ({record.get('kind')}), bed {record.get('bed_code') or '-'}, "
        f"installer {record.get('installer')}, {cell(record.get('finished_at'))}"
    )
    table = Table(header_style="bold")
    for col in ("step", "result", "latency"):
        table.add_column(col)
    for step in record.get("steps", []):
        lat = step.get("latency_ms")
        st = str(step.get("status", ""))
        table.add_row(str(step.get("name")), f"[{STEP_STYLE.get(st, 'white')}]{st}[/]",
                      "-" if lat is None else f"{lat:.0f} ms")  # fmt: skip
    ctx.out.out.print(table)
    notified = record.get("family_notified")
    ctx.out.out.print(
        "[red]a family member WAS notified during the test[/]" if notified
        else "[green]✓ no family member was paged (test mode)[/]"
    )  # fmt: skip


# -- commissioning records ---------------------------------------------------------------


def cmd_commissioning_list(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = ctx.api.get(f"/sites/{_q(ctx.site())}/commissioning", format="json")
    cols = ["record_id", "device_id", "kind", "bed_code", "installer", "finished_at", "result"]
    ctx.out.table(rows, cols, title=f"commissioning records of {ctx.site()}")
    return 0


def cmd_commissioning_export(ctx: Ctx, args: argparse.Namespace) -> int:
    data = ctx.api.get_bytes(f"/sites/{_q(ctx.site())}/commissioning", format=args.format)
    if args.out == "-":
        if args.format != "csv":
            raise CliError("a PDF cannot go to the terminal", "give --out FILE.pdf", Exit.USAGE)
        sys.stdout.buffer.write(data)
        return 0
    out = Path(args.out or f"commissioning-{ctx.site()}.{args.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    ctx.out.done(f"wrote {out} ({len(data)} bytes)", {"file": str(out), "bytes": len(data)})
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
    from gateway.cli import build_parser  # noqa: PLC0415 (the whole tree, built on demand)

    sys.stdout.write(script(build_parser(), args.shell))
    return 0
