"""The commissioning-record PDF (issue 11 §3): one row per finished acceptance test, every
step listed, every cell wrapped (nothing cut), as many A4-landscape pages as it takes, and
signature lines for the installer and the operator's site representative with dates.

People are shown by their display names (``users.display_name``; the role when a user has
none), never by user ids or sign-in names. zh-CN by default, English on request; times in
the site's zone, named. Drawn with matplotlib (no other dependency), Chinese with the CJK
font of :mod:`gateway.reports.fonts`. Pure apart from drawing: no database, no clock.
"""

from __future__ import annotations

import io
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gateway import l10n
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.l10n import DEFAULT_LANGUAGE, Lang

__all__ = ["Person", "render", "wrap"]

PAGE_W_IN: Final = 11.69  # A4 landscape
PAGE_H_IN: Final = 8.27
MARGIN_IN: Final = 0.45
FONT_PT: Final = 7.5
LINE_IN: Final = FONT_PT * 1.35 / 72
PAD_IN: Final = 0.04
_WIDE_LATIN: Final = frozenset("MWmw@%")

_WORDS: Final = {
    "zh-CN": {
        "title": "设备调试验收记录", "site": "站点", "page": "第 {n}/{of} 页",
        "printed": "生成时间", "none": "暂无调试记录",
        "cols": ("设备", "类型", "床位", "安装人员", "完成时间", "结果", "验收步骤", "通知家属",
                 "备注"),
        "passed": "通过", "failed": "未通过", "aborted": "已中止", "waiting": "未完成",
        "yes": "是", "no": "否",
        "sign.installer": "安装人员签字", "sign.operator": "运营方 / 站点代表签字",
        "sign.date": "日期", "sign.names": "本记录中的安装人员：{names}",
        "role.installer": "安装人员", "role.admin": "管理员", "role.supervisor": "主管",
        "role.duty_staff": "护工",
    },
    "en": {
        "title": "Commissioning records", "site": "Site", "page": "page {n}/{of}",
        "printed": "Printed", "none": "no commissioning records yet",
        "cols": ("Device", "Kind", "Bed", "Installer", "Finished", "Result", "Acceptance steps",
                 "Family notified", "Notes"),
        "passed": "passed", "failed": "failed", "aborted": "aborted", "waiting": "not done",
        "yes": "yes", "no": "no",
        "sign.installer": "Installer's signature", "sign.operator":
        "Operator / site representative's signature", "sign.date": "Date",
        "sign.names": "Installers in this record: {names}",
        "role.installer": "installer", "role.admin": "admin", "role.supervisor": "supervisor",
        "role.duty_staff": "care worker",
    },
}  # fmt: skip
# Column widths as shares of the table's width.
_COL_SHARES: Final = (0.11, 0.07, 0.07, 0.08, 0.10, 0.05, 0.22, 0.06, 0.24)


@dataclass(frozen=True, slots=True)
class Person:
    """How a user is shown: the display name, else the role."""

    display_name: str | None
    role: str | None = None


def _word(lang: Lang, key: str) -> Any:
    return _WORDS[lang][key]


def _person(lang: Lang, user_id: str, people: Mapping[str, Person]) -> str:
    who = people.get(user_id)
    if who is not None and who.display_name:
        return who.display_name
    role = who.role if who is not None and who.role else "installer"
    return str(_WORDS[lang].get(f"role.{role}", _word(lang, "role.installer")))


def em(text: str) -> float:
    """Width of ``text`` in em, on the safe side for DejaVu Sans and the CJK font: a CJK
    or full-width glyph 1 em, M/W/m/w 1 em, capitals 0.8, lower case 0.62, digits 0.64,
    anything else (spaces, punctuation) 0.5."""
    total = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in "WF" or ch in _WIDE_LATIN:
            total += 1.0
        elif ch.isupper():
            total += 0.8
        elif ch.isdigit():
            total += 0.64
        elif ch.isalpha():
            total += 0.62
        else:
            total += 0.5
    return total


_TOKEN = re.compile(r"\s+|[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u9fff]+")


def wrap(text: str, columns: float) -> list[str]:
    """``text`` in lines at most ``columns`` em wide (:func:`em`): broken at spaces where it
    can, inside a word or between CJK characters where it must; explicit line breaks kept.
    Never drops a character (only the spaces a break replaces)."""
    columns = max(2.0, columns)
    out: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for token in _TOKEN.findall(paragraph):
            if token.isspace():
                if line and em(line) + 1 <= columns:
                    line += " "
                elif line:
                    out.append(line.rstrip())
                    line = ""
                continue
            if em(line) + em(token) <= columns:
                line += token
                continue
            if line.strip():
                out.append(line.rstrip())
            line = ""
            for ch in token:  # a token longer than the column: cut it
                if em(line) + em(ch) > columns:
                    out.append(line)
                    line = ""
                line += ch
        out.append(line.rstrip())
    return out


def _steps(lang: Lang, steps: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for s in steps:
        status = str(_WORDS[lang].get(str(s.get("status")), s.get("status")))
        lat = s.get("latency_ms")
        ms = f" ({float(lat):.0f} ms)" if isinstance(lat, int | float) else ""
        lines.append(f"{s.get('name', '?')}: {status}{ms}")
    return "\n".join(lines)


def _cells(
    lang: Lang, r: Mapping[str, Any], people: Mapping[str, Person], offset: int
) -> list[str]:
    finished = r["finished_at"]
    when = l10n.local_time(finished, offset) if isinstance(finished, datetime) else str(finished)
    result = str(_WORDS[lang].get(str(r["result"]), r["result"]))
    return [
        str(r["device_id"]),
        l10n.device_kind(lang, r["kind"]),
        str(r.get("bed_code") or "—"),
        _person(lang, str(r["installer"]), people),
        when,
        result,
        _steps(lang, r.get("steps") or []),
        _word(lang, "yes" if r.get("family_notified") else "no"),
        " ".join(str(r.get("notes") or "").split()) or "—",
    ]


def render(
    site_id: str,
    records: Sequence[Mapping[str, Any]],
    *,
    people: Mapping[str, Person] | None = None,
    site_name: str | None = None,
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT,
    printed_at: datetime | None = None,
    lang: Lang = DEFAULT_LANGUAGE,
    families: Sequence[str] | None = None,
) -> bytes:
    """The PDF of ``records`` (dicts of :class:`gateway.storage.acceptance.CommissioningRecord`).

    ``people`` maps user ids to :class:`Person`; ``families`` overrides the font list."""
    from matplotlib import rc_context  # noqa: PLC0415
    from matplotlib.backends.backend_pdf import PdfPages  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    from gateway.reports.fonts import font_families  # noqa: PLC0415

    people = people or {}
    table_w = PAGE_W_IN - 2 * MARGIN_IN
    widths = [share * table_w for share in _COL_SHARES]
    em_in = FONT_PT / 72
    capacity = [(w - 2 * PAD_IN) / em_in for w in widths]
    header = [wrap(c, n) for c, n in zip(_word(lang, "cols"), capacity, strict=True)]
    rows = [
        [wrap(c, n) for c, n in zip(_cells(lang, r, people, utc_offset_s), capacity, strict=True)]
        for r in records
    ]
    top = PAGE_H_IN - MARGIN_IN - 0.55  # below the page title
    bottom = MARGIN_IN + 0.3  # above the footer
    header_h = max(len(c) for c in header) * LINE_IN + 2 * PAD_IN

    # Lay the rows out on pages: a row too tall for what is left of a page goes on the next;
    # one taller than a whole page is split across pages (its lines continue).
    pages: list[list[list[list[str]]]] = [[]]
    y = top - header_h
    for row in rows:
        pending = row
        while True:
            n = max(len(c) for c in pending)
            fits = int((y - bottom - 2 * PAD_IN) / LINE_IN)
            if n <= fits:
                pages[-1].append(pending)
                y -= n * LINE_IN + 2 * PAD_IN
                break
            if pages[-1] and n <= int((top - header_h - bottom - 2 * PAD_IN) / LINE_IN):
                pages.append([])  # the whole row fits on a fresh page
                y = top - header_h
                continue
            if fits >= 1:  # split: the first lines here, the rest on the next page
                pages[-1].append([c[:fits] for c in pending])
                pending = [c[fits:] for c in pending]
            pages.append([])
            y = top - header_h
    sign_h = 1.5
    if y - bottom < sign_h:
        pages.append([])
    named = (people.get(str(r["installer"])) for r in records)
    installers = sorted({p.display_name for p in named if p is not None and p.display_name})

    buf = io.BytesIO()
    fonts = list(font_families() if families is None else families)
    title = f"{_word(lang, 'title')} — {_word(lang, 'site')} {site_name or site_id}"
    if site_name:
        title += f" ({site_id})"
    printed = (
        f"{_word(lang, 'printed')}: {l10n.local_time(printed_at, utc_offset_s)}"
        if printed_at is not None
        else f"{l10n.zone_name(utc_offset_s)}"
    )
    # Notes are data, never markup: "$\\foo$" would be mathtext (and crash the export).
    with warnings.catch_warnings(), rc_context({"font.family": fonts, "text.parse_math": False}):
        if len(fonts) == 1:  # no CJK font: boxes, already logged once
            warnings.filterwarnings("ignore", message="Glyph .* missing")
        with PdfPages(buf) as pdf:
            for number, page in enumerate(pages, 1):
                fig = Figure(figsize=(PAGE_W_IN, PAGE_H_IN))

                def text(x: float, y: float, s: str, **kw: Any) -> None:
                    fig.text(x / PAGE_W_IN, y / PAGE_H_IN, s, **kw)  # noqa: B023

                def hline(x0: float, x1: float, y: float, lw: float = 0.4) -> None:
                    fig.add_artist(_line(fig, [x0 / PAGE_W_IN, x1 / PAGE_W_IN],  # noqa: B023
                                         [y / PAGE_H_IN] * 2, lw))  # fmt: skip

                def vline(x: float, y0: float, y1: float) -> None:
                    fig.add_artist(_line(fig, [x / PAGE_W_IN] * 2,  # noqa: B023
                                         [y0 / PAGE_H_IN, y1 / PAGE_H_IN], 0.4))  # fmt: skip

                text(MARGIN_IN, PAGE_H_IN - MARGIN_IN - 0.2, title, fontsize=12, va="top")
                text(PAGE_W_IN - MARGIN_IN, PAGE_H_IN - MARGIN_IN - 0.2,
                     _word(lang, "page").format(n=number, of=len(pages)), fontsize=8,
                     va="top", ha="right")  # fmt: skip
                text(MARGIN_IN, MARGIN_IN, printed, fontsize=7, va="bottom", color="dimgray")
                y = top
                if not records and number == 1:
                    text(MARGIN_IN, y - 0.2, _word(lang, "none"), fontsize=10, va="top")
                    y -= 0.5
                if page:
                    draw = (text, hline, vline)
                    y = _draw_row(draw, header, widths, y, bold=True)
                    for row in page:
                        y = _draw_row(draw, row, widths, y)
                if number == len(pages):
                    _signatures(text, hline, lang, installers, y)
                pdf.savefig(fig)
    return buf.getvalue()


def _line(fig: Any, xs: list[float], ys: list[float], lw: float) -> Any:
    from matplotlib.lines import Line2D  # noqa: PLC0415

    return Line2D(xs, ys, transform=fig.transFigure, color="black", linewidth=lw)


def _draw_row(
    draw: tuple[Any, Any, Any], cells: list[list[str]], widths: list[float], y: float,
    *, bold: bool = False,
) -> float:  # fmt: skip
    text, hline, vline = draw
    n = max(len(c) for c in cells)
    h = n * LINE_IN + 2 * PAD_IN
    x = MARGIN_IN
    right = MARGIN_IN + sum(widths)
    hline(MARGIN_IN, right, y)
    for lines, w in zip(cells, widths, strict=True):
        vline(x, y - h, y)
        for k, line in enumerate(lines):
            text(x + PAD_IN, y - PAD_IN - k * LINE_IN, line, fontsize=FONT_PT, va="top",
                 color="#1f3a5f" if bold else "black")  # fmt: skip
        x += w
    vline(right, y - h, y)
    hline(MARGIN_IN, right, y - h)
    return y - h


def _signatures(text: Any, hline: Any, lang: Lang, installers: list[str], y: float) -> None:
    """The signature block under the table: installer, operator / site representative, and
    a date line for each."""
    y -= 0.35
    if installers:
        text(MARGIN_IN, y, _word(lang, "sign.names").format(names="、".join(installers)
             if lang == "zh-CN" else ", ".join(installers)), fontsize=9, va="top")  # fmt: skip
        y -= 0.45
    half = (PAGE_W_IN - 2 * MARGIN_IN) / 2
    for i, key in enumerate(("sign.installer", "sign.operator")):
        x = MARGIN_IN + i * half
        text(x, y - 0.05, _word(lang, key), fontsize=9, va="bottom")
        hline(x, x + half - 0.4, y - 0.4)
        text(x, y - 0.6, _word(lang, "sign.date"), fontsize=9, va="bottom")
        hline(x + 0.6, x + half - 0.4, y - 0.6)
