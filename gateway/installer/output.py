"""How the installer commands print: rich tables for people, ``--json`` for scripts.

Results go to stdout; progress, warnings, errors and hints go to stderr, so
``safehome bed list --json | jq`` always sees pure JSON. Colours and live displays switch
off by themselves when stdout is not a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.installer.client import CliError


class Output:
    """Where a command's results and messages go."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.out = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """Whether stdout is a terminal (live displays, prompts)."""
        return self.out.is_terminal

    # -- messages (stderr) ---------------------------------------------------------------

    def info(self, text: str) -> None:
        """A progress or status line (suppressed with ``--json``)."""
        if not self.as_json:
            self.err.print(text)

    def warn(self, text: str) -> None:
        """A warning, always shown (stderr)."""
        self.err.print(f"[bold yellow]warning:[/] {text}")

    def error(self, err: CliError) -> None:
        """An error and its hint."""
        self.err.print(f"[bold red]error:[/] {escape(err.message)}")
        if err.hint:
            self.err.print(f"[cyan]hint:[/] {escape(err.hint)}")

    # -- results (stdout) ----------------------------------------------------------------

    def json(self, value: Any) -> None:
        """``value`` as JSON (one document)."""
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str | tuple[str, str]],
        *,
        title: str | None = None,
        raw: Any = None,
    ) -> None:
        """Rows as a table (or ``raw``/``rows`` as JSON with ``--json``). A column is a key
        or ``(key, heading)``; dotted keys reach into nested objects."""
        if self.as_json:
            self.json(rows if raw is None else raw)
            return
        table = Table(title=title, header_style="bold")
        keys = []
        for col in columns:
            key, heading = col if isinstance(col, tuple) else (col, col)
            keys.append(key)
            table.add_column(heading)
        for row in rows:
            table.add_row(*(escape(cell(lookup(row, k))) for k in keys))
        self.out.print(table)
        if not rows:
            self.info("(none)")

    def record(self, value: Mapping[str, Any], *, title: str | None = None) -> None:
        """One object as a two-column table (nested values as compact JSON)."""
        if self.as_json:
            self.json(value)
            return
        table = Table(title=title, show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, val in value.items():
            table.add_row(escape(str(key)), escape(cell(val)))
        self.out.print(table)

    def done(self, text: str, value: Any = None) -> None:
        """A one-line result for people, or ``value`` as JSON."""
        if self.as_json:
            self.json(value if value is not None else {"ok": True, "message": text})
        else:
            self.out.print(f"[green]✓[/] {escape(text)}")


def escape(text: str) -> str:
    """Text shown literally by rich (no markup from data)."""
    return text.replace("[", r"\[")


def lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[a][b]`` for ``key`` ``a.b``; None when missing."""
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    """A table cell: '-' for None, yes/no for booleans, times shortened, JSON for the rest."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return short_time(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and not value:
        return "-"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def short_time(text: str) -> str:
    """An ISO timestamp as local ``YYYY-MM-DD HH:MM:SS``; other text unchanged."""
    if len(text) < 19 or text[4] != "-" or text[10] not in "T ":
        return text
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return text
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(text: str | None, now: datetime | None = None) -> str:
    """How long ago an ISO timestamp was (``12s``, ``5m``, ``3h``, ``2d``)."""
    if not text:
        return "never"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return text
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    s = max(0.0, ((now or datetime.now(UTC)) - t).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return f"{int(s)}s ago"


def join_nonempty(parts: Iterable[str | None], sep: str = " ") -> str:
    """``parts`` without the empty ones, joined."""
    return sep.join(p for p in parts if p)
