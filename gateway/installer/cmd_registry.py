"""The registry commands: ``site``, ``location``, ``bed`` and ``resident`` (list, show,
create, edit: sixteen commands driven by the table :data:`RESOURCES`), CSV import and
labels.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from gateway.installer import labels as lbl
from gateway.installer.client import CliError, Exit
from gateway.installer.context import Ctx, fields, q
from gateway.installer.csvcheck import check_csv
from gateway.installer.output import escape
from gateway.registry_rules import RowError

Command = Callable[[Ctx, argparse.Namespace], int]


class Send(Enum):
    """When an option goes into a create body."""

    ALWAYS = "always"
    GIVEN = "given"  # not None
    FILLED = "filled"  # not empty


@dataclass(frozen=True, slots=True)
class Resource:
    """One registry resource as the CLI sees it: its paths, columns and bodies.

    ``create``/``edit`` map a body field to the option (``argparse`` dest) it comes from.
    """

    noun: str
    plural: str
    sited: bool  # listed and created under /sites/{site}/ (a site: at /sites)
    item: str  # the path of one, e.g. "/beds/{}"
    show_suffix: str  # after the item path for show ("/registry" for residents)
    key: str  # the option naming the one shown or edited
    created: str  # the option named in "... created"
    columns: list[str | tuple[str, str]]
    create: tuple[tuple[str, str, Send], ...]
    edit: tuple[tuple[str, str], ...]

    def collection(self, ctx: Ctx) -> str:
        return f"/sites/{q(ctx.site())}/{self.plural}" if self.sited else f"/{self.plural}"

    def title(self, ctx: Ctx) -> str:
        return f"{self.plural} of {ctx.site()}" if self.sited else self.plural

    def one(self, args: argparse.Namespace) -> str:
        return self.item.format(q(getattr(args, self.key)))


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "site", "sites", sited=False, item="/sites/{}", show_suffix="", key="site_id",
        created="site_id", columns=["site_id", "name", "kind", "utc_offset_s"],
        create=(("site_id", "site_id", Send.ALWAYS), ("name", "name", Send.ALWAYS),
                ("kind", "kind", Send.ALWAYS), ("utc_offset_s", "utc_offset", Send.GIVEN)),
        edit=(("name", "name"), ("utc_offset_s", "utc_offset")),
    ),
    Resource(
        "location", "locations", sited=True, item="/locations/{}", show_suffix="",
        key="location_id", created="location_id",
        columns=["location_id", "kind", "label", "address"],
        create=(("location_id", "location_id", Send.ALWAYS), ("kind", "kind", Send.ALWAYS),
                ("label", "label", Send.ALWAYS), ("address", "address", Send.FILLED)),
        edit=(("label", "label"), ("address", "address")),
    ),
    Resource(
        "bed", "beds", sited=True, item="/beds/{}", show_suffix="", key="bed",
        created="bed_code",
        columns=["bed_code", "bed_id", "location_id", ("elder_code", "resident")],
        create=(("bed_code", "bed_code", Send.ALWAYS), ("location_id", "location", Send.ALWAYS),
                ("bed_id", "bed_id", Send.FILLED)),
        edit=(("location_id", "location"), ("bed_code", "new_code")),
    ),
    Resource(
        "resident", "residents", sited=True, item="/residents/{}", show_suffix="/registry",
        key="resident", created="elder_code",
        columns=["elder_code", "resident_id", "care_level", "bed_code", "lives_alone",
                 "high_risk"],
        create=(("elder_code", "elder_code", Send.ALWAYS),
                ("display_name", "name", Send.ALWAYS),
                ("care_level", "care_level", Send.ALWAYS),
                ("lives_alone", "lives_alone", Send.ALWAYS),
                ("high_risk", "high_risk", Send.ALWAYS),
                ("bed_code", "bed", Send.FILLED), ("resident_id", "resident_id", Send.FILLED)),
        edit=(("display_name", "name"), ("care_level", "care_level"), ("bed", "bed"),
              ("lives_alone", "lives_alone"), ("high_risk", "high_risk")),
    ),
)  # fmt: skip


def _create_body(res: Resource, args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field, option, send in res.create:
        value = getattr(args, option)
        if (
            send is Send.ALWAYS
            or (send is Send.GIVEN and value is not None)
            or (send is Send.FILLED and value)
        ):
            body[field] = value
    return body


def _list(res: Resource, ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.table(ctx.api.get(res.collection(ctx)), res.columns, title=res.title(ctx))
    return 0


def _show(res: Resource, ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.out.record(ctx.api.get(res.one(args) + res.show_suffix))
    return 0


def _create(res: Resource, ctx: Ctx, args: argparse.Namespace) -> int:
    made = ctx.api.post(res.collection(ctx), _create_body(res, args))
    ctx.out.done(f"{res.noun} {getattr(args, res.created)} created", made)
    return 0


def _edit(res: Resource, ctx: Ctx, args: argparse.Namespace) -> int:
    body = fields(**{field: getattr(args, option) for field, option in res.edit})
    changed = ctx.api.patch(res.one(args), body)
    ctx.out.done(f"{res.noun} {getattr(args, res.key)} updated", changed)
    return 0


def _bound(action: Callable[[Resource, Ctx, argparse.Namespace], int], res: Resource) -> Command:
    def command(ctx: Ctx, args: argparse.Namespace) -> int:
        return action(res, ctx, args)

    return command


ACTIONS: dict[str, Callable[[Resource, Ctx, argparse.Namespace], int]] = {
    "list": _list, "show": _show, "create": _create, "edit": _edit,
}  # fmt: skip
CRUD_COMMANDS: dict[str, Command] = {
    f"{res.noun}_{verb}": _bound(action, res)
    for res in RESOURCES
    for verb, action in ACTIONS.items()
}


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
    path = f"/sites/{q(ctx.site())}/import/{kind}"
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


def merge_errors(local: list[RowError], remote: list[RowError]) -> list[RowError]:
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
    errors = merge_errors(local.errors, _server_errors(checked))
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
        codes = [str(b["bed_code"]) for b in ctx.api.get(f"/sites/{q(ctx.site())}/beds")]
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
