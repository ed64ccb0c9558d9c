"""The device commands: register, show, rotate, decommission, bind, unbind, replace, the
acceptance test (``safehome device test``) and the commissioning records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.installer import labels as lbl
from gateway.installer.client import CliError, Exit
from gateway.installer.config import write_private
from gateway.installer.context import Ctx, q
from gateway.installer.output import cell, escape

POLL_S = 0.5
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
    result = ctx.api.post(f"/sites/{q(ctx.site())}/devices", body)
    device_id = result.get("device", {}).get("device_id") or result["config"].get("device_id")
    _show_config(ctx, args, result, f"device {device_id} registered ({args.kind})")
    return 0


def cmd_device_show(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(f"/devices/{q(args.device_id)}"))
    return 0


def cmd_device_rotate(ctx: Ctx, args: argparse.Namespace) -> int:
    result = ctx.api.post(f"/devices/{q(args.device_id)}/credentials/rotate")
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
    device = ctx.api.post(f"/devices/{q(args.device_id)}/decommission", body)
    ctx.out.done(f"device {args.device_id} decommissioned; its credentials are revoked", device)
    return 0


def cmd_device_bind(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("bed", args.bed), ("resident", args.resident),
                              ("location_id", args.location)) if v}  # fmt: skip
    if not body:
        raise CliError("bind to what?", "add --bed CODE and/or --resident CODE", Exit.USAGE)
    device = ctx.api.post(f"/devices/{q(args.device_id)}/bind", body)
    target = " and ".join(f"{k.removesuffix('_id')} {v}" for k, v in body.items())
    ctx.out.done(f"device {args.device_id} bound to {target}", device)
    return 0


def cmd_device_unbind(ctx: Ctx, args: argparse.Namespace) -> int:
    device = ctx.api.post(f"/devices/{q(args.device_id)}/unbind")
    ctx.out.done(f"device {args.device_id} unbound", device)
    return 0


def cmd_device_replace(ctx: Ctx, args: argparse.Namespace) -> int:
    given = (("serial", args.serial), ("model", args.model), ("device_id", args.new_id),
             ("firmware", args.firmware))  # fmt: skip
    body = {k: v for k, v in given if v}
    result = ctx.api.post(f"/devices/{q(args.device_id)}/replace", body)
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
            escape(seen(step.get("observed"))),
        )
    notified = state.get("family_notified")
    table.add_row("family page", "", "[red]SENT[/]" if notified else "[green]none[/]", "", "")
    return table


def seen(observed: Any) -> str:
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


def settled(state: Mapping[str, Any]) -> bool:
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
    started = ctx.api.post(f"/devices/{q(args.device_id)}/acceptance", body)
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
                while not settled(state) and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                    state = ctx.api.get(f"/acceptance/{q(test_id)}")
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
                if settled(state) or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
                state = ctx.api.get(f"/acceptance/{q(test_id)}")
    except KeyboardInterrupt:
        notes = args.notes or "aborted by the installer"
        record = ctx.api.post(f"/acceptance/{q(test_id)}/finish", {"abort": True, "notes": notes})
        _show_record(ctx, record)
        return int(Exit.TEST_FAILED)
    if state.get("finished_at"):  # ended elsewhere (safehome device test D --abort)
        raise CliError(
            f"test {test_id} was ended elsewhere: {state.get('status')}",
            "see the record: safehome commissioning list", Exit.TEST_FAILED,
        )  # fmt: skip
    finish: dict[str, Any] = {"notes": args.notes} if args.notes else {}
    record = ctx.api.post(f"/acceptance/{q(test_id)}/finish", finish)
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
    device = ctx.api.get(f"/devices/{q(args.device_id)}")
    test_id = device.get("running_test")
    if not test_id:
        raise CliError(f"device {args.device_id} has no acceptance test running",
                       code=Exit.NOT_FOUND)  # fmt: skip
    notes = args.notes or "aborted by the installer"
    record = ctx.api.post(f"/acceptance/{q(str(test_id))}/finish", {"abort": True, "notes": notes})
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
    rows = ctx.api.get(f"/sites/{q(ctx.site())}/commissioning", format="json")
    cols = ["record_id", "device_id", "kind", "bed_code", "installer", "finished_at", "result"]
    ctx.out.table(rows, cols, title=f"commissioning records of {ctx.site()}")
    return 0


def cmd_commissioning_export(ctx: Ctx, args: argparse.Namespace) -> int:
    data = ctx.api.get_bytes(f"/sites/{q(ctx.site())}/commissioning", format=args.format)
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
