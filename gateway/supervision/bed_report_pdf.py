"""The monthly per-bed supervision report (:mod:`gateway.supervision.bed_report`) as a
printable Chinese PDF: A4 landscape, one table per site with a totals row, district totals
and a signature and stamp line at the end; under each site's table a footnote names the
60-second answer target it is judged against (its contract target and basis, or the
international 97.5 %), and the district totals say they are judged against the strictest;
cells wrap, a table continues on the next page with its header repeated; every page carries
the report month, the generation time in the site's zone and "第 n / N 页".

Drawn with matplotlib (the PDF machinery of the commissioning records) and the CJK font of
:mod:`gateway.reports.fonts`; without one the PDF is still produced (boxes for Chinese).
Layout first (rows and their wrapped lines, split into pages), then drawing, so the page
count is known on every page.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Final

from gateway.supervision.bed_report import (
    ANSWER_TARGET_S,
    ANSWER_TARGET_SHARE,
    SERVICE_KINDS,
    AnswerTarget,
    BedLine,
    BedReport,
    SiteSection,
    Totals,
)
from gateway.visits.service import SERVICES

PAGE_W: Final = 842.0  # A4 landscape, points
PAGE_H: Final = 595.0
MARGIN: Final = 36.0
FONT: Final = 7.5  # table text, points
LINE: Final = FONT * 1.3
PAD: Final = 3.0
HEADER_H: Final = 52.0  # title and the report line at the top of each page
FOOTER_H: Final = 20.0

SERVICE_EN: Final = {"visit": "visit", "bathing": "bathing", "meals": "meals",
                     "medical_check": "check-up", "rehabilitation": "rehab"}  # fmt: skip
# (zh-CN label, English label, relative width)
COLUMNS: Final[tuple[tuple[str, str, float], ...]] = (
    ("床位编码", "Bed code", 110),
    ("老人编码", "Elder code", 100),
    *((SERVICES[k], SERVICE_EN[k], 44) for k in SERVICE_KINDS),
    ("服务合计", "Services", 44),
    ("探访 已做/应做", "Visits done/due", 60),
    ("告警", "Alarms", 38),
    (f"{ANSWER_TARGET_S}秒内响应", f"Answered in {ANSWER_TARGET_S} s", 70),
    ("响应中位数", "Median answer", 54),
    ("设备在线率", "Devices online", 54),
)  # fmt: skip
_SCALE = (PAGE_W - 2 * MARGIN) / sum(c[2] for c in COLUMNS)
WIDTHS: Final = tuple(c[2] * _SCALE for c in COLUMNS)


def text_width(text: str, size: float = FONT) -> float:
    """Approximate width in points: a CJK or full-width character is one em, others 0.6."""
    return sum(size if ord(ch) >= 0x2E80 else 0.6 * size for ch in text)


def wrap(text: str, width: float, size: float = FONT) -> list[str]:
    """``text`` broken into lines no wider than ``width``: after the last space or ``-`` of
    the line when there is one, else at any character (Chinese has no spaces); explicit
    newlines are kept."""
    lines: list[str] = []
    for part in text.split("\n"):
        current = ""
        for ch in part:
            if current and text_width(current + ch, size) > width:
                cut = max(current.rfind(" "), current.rfind("-")) + 1
                if cut <= 0:  # no break point: at the character
                    cut = len(current)
                lines.append(current[:cut].rstrip())
                current = (current[cut:] + ch).lstrip()
            else:
                current += ch
        lines.append(current)
    return lines


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} 秒" if value < 120 else f"{value / 60:.1f} 分钟"


def _answered(answered: int, alarms: int) -> str:
    return "—" if alarms == 0 else f"{answered}/{alarms}（{answered / alarms * 100:.0f}%）"


def bed_cells(line: BedLine) -> list[str]:
    """The table cells of one bed."""
    return [
        line.bed_code, line.elder_code,
        *(str(line.services[k]) for k in SERVICE_KINDS),
        str(sum(line.services.values())),
        f"{line.visits_done}/{line.visits_due}",
        str(line.alarms), _answered(line.answered_in_target, line.alarms),
        _secs(line.median_answer_s), _pct(line.online_rate),
    ]  # fmt: skip


def _verdict(t: Totals) -> str:
    met = t.target_met
    return "" if met is None else ("\n达标" if met else "\n未达标")


def _met(t: Totals) -> str:
    return "无告警" if t.target_met is None else "达标" if t.target_met else "未达标"


def target_text(target: AnswerTarget) -> str:
    """E.g. ``60 秒内响应率目标 95%（运营合同目标）；国际参考 97.5%``."""
    head = f"{ANSWER_TARGET_S} 秒内响应率目标 {target.share * 100:g}%"
    if target.local:
        return f"{head}（{target.basis}）；国际参考 {ANSWER_TARGET_SHARE * 100:g}%"
    return f"{head}（国际参考：{target.basis}）"


def site_note(section: SiteSection) -> str:
    """The footnote under a site's table: its target, with the basis, and the verdict."""
    t = section.totals
    return f"注：{target_text(section.target)}；本期 {_pct(t.answer_share)}，{_met(t)}。"


def district_note(report: BedReport) -> str:
    """The footnote under the district totals: judged against the strictest site target."""
    target, t = report.target, report.totals
    sites = "、".join(s.site_id for s in report.sections if s.target == target)
    which = f"（机构 {sites}）" if sites else ""
    return (f"注：总计按各机构中最严格（最高）的目标评判{which}：{target_text(target)}；"
            f"本期 {_pct(t.answer_share)}，{_met(t)}。")  # fmt: skip


def total_cells(label: str, t: Totals) -> list[str]:
    """The cells of a totals row."""
    return [
        f"{label}（{t.beds} 床）", "",
        *(str(t.services[k]) for k in SERVICE_KINDS),
        str(t.services_total), f"{t.visits_done}/{t.visits_due}", str(t.alarms),
        _answered(t.answered_in_target, t.alarms) + _verdict(t), "—", _pct(t.online_rate),
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    """One laid-out row: ``kind`` head | bed | total | title | text | sign."""

    kind: str
    lines: list[list[str]]  # per cell (or one cell for title/text/sign): its lines
    height: float


def _table_row(kind: str, cells: Sequence[str]) -> Row:
    lines = [wrap(c, w - 2 * PAD) for c, w in zip(cells, WIDTHS, strict=True)]
    return Row(kind, lines, max(len(x) for x in lines) * LINE + PAD + 2)


def _text_row(kind: str, text: str, size: float = FONT + 1.5) -> Row:
    lines = wrap(text, PAGE_W - 2 * MARGIN, size)
    return Row(kind, [lines], len(lines) * size * 1.5 + 6)


SIGN_LINE: Final = (
    "监管单位（盖章）：____________________    审核人（签字）：____________________    "
    "日期：______年____月____日"
)
HEAD: Final = _table_row("head", [f"{zh}\n{en}" for zh, en, _ in COLUMNS])


def _section_title(s: SiteSection, more: str = "") -> Row:
    district = f" · 区县 {s.district_id}" if s.district_id else ""
    return _text_row("title", f"机构 {s.name}（{s.site_id}）{district}{more}")


def layout(report: BedReport) -> list[list[Row]]:
    """The rows of every page."""
    body_h = PAGE_H - 2 * MARGIN - HEADER_H - FOOTER_H
    pages: list[list[Row]] = [[]]
    used = 0.0

    def put(row: Row, repeat: Sequence[Row] = ()) -> None:
        nonlocal used
        if used + row.height > body_h and pages[-1]:
            pages.append([])
            used = 0.0
            for r in repeat:
                pages[-1].append(r)
                used += r.height
        pages[-1].append(row)
        used += row.height

    for section in report.sections:
        title = _section_title(section)
        if used + title.height + HEAD.height + 3 * LINE > body_h and pages[-1]:
            pages.append([])
            used = 0.0
        put(title)
        put(HEAD)
        repeat = (_section_title(section, "（续 continued）"), HEAD)
        for line in section.lines:
            put(_table_row("bed", bed_cells(line)), repeat)
        if not section.lines:
            put(_text_row("text", "本月无在床老人 / no occupied beds"), repeat)
        put(_table_row("total", total_cells("本机构合计", section.totals)), repeat)
        put(_text_row("text", site_note(section), FONT))
        put(_text_row("text", ""))
    if len(report.sections) != 1:
        t = report.totals
        put(_text_row("title", f"汇总 Totals（{len(report.sections)} 个机构）"))
        put(HEAD)
        put(_table_row("total", total_cells("总计", t)), (HEAD,))
        put(_text_row("text", district_note(report), FONT))
    notes = (
        f"说明：各机构按本机构的 {ANSWER_TARGET_S} 秒内响应率目标评判（运营合同等，见各机构注；"
        f"未配置时按国际参考 {ANSWER_TARGET_SHARE * 100:g}%）；应探访次数按探访计划（风险类别最严格"
        "间隔）计算至报告时间；设备在线率为床位设备（床垫、按钮、手环等）在服务时间内的在线比例；"
        "表中只有编码，无姓名。"
    )
    last = (_text_row("text", notes, FONT), _text_row("sign", SIGN_LINE, FONT + 2))
    if used + sum(r.height for r in last) > body_h and pages[-1]:  # notes and signature
        pages.append([])  # stay together
        used = 0.0
    for row in last:
        put(row)
    return pages


def render_pdf(report: BedReport, families: Sequence[str] | None = None) -> bytes:
    """The report as PDF bytes (``families``: the font list; default the installed CJK font
    of :mod:`gateway.reports.fonts`, DejaVu Sans without one)."""
    from matplotlib import rc_context  # noqa: PLC0415 (only when drawing)
    from matplotlib.backends.backend_pdf import PdfPages  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    from gateway.reports.fonts import BASE_FAMILY, cjk_font_family  # noqa: PLC0415

    pages = layout(report)
    if families is None:  # the CJK font alone (it has Latin glyphs): one font to embed, and
        cjk = cjk_font_family()  # no fallback lookups: about half the time of two fonts
        families = [BASE_FAMILY] if cjk is None else [cjk]
    families = list(families)
    tz = timezone(timedelta(seconds=report.utc_offset_s))
    generated = report.generated_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    zone = f"UTC{report.utc_offset_s / 3600:+g}"
    year, month = report.month.split("-")
    kind, _, ident = report.scope.partition(":")
    scope = f"区县 {ident}" if kind == "district" else f"机构 {ident}"
    info = (f"范围：{scope} · 报告月份：{year}年{int(month)}月 · 生成时间：{generated}（{zone}，"
            f"机构当地时间）")  # fmt: skip
    buf = io.BytesIO()
    with (
        warnings.catch_warnings(),
        rc_context({"font.family": families, "text.parse_math": False, "pdf.fonttype": 42}),
    ):
        if len(families) == 1:  # no CJK font: boxes, already logged once
            warnings.filterwarnings("ignore", message="Glyph .* missing")
        meta = {"Title": f"床位监管月报 {report.scope} {report.month}", "Creator": "safehome"}
        with PdfPages(buf, metadata=meta) as pdf:
            for n, rows in enumerate(pages, 1):
                fig = Figure(figsize=(PAGE_W / 72, PAGE_H / 72))
                ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
                ax.set_xlim(0, PAGE_W)
                ax.set_ylim(PAGE_H, 0)
                ax.axis("off")
                ax.text(MARGIN, MARGIN, "床位监管月报（一人一床一码）  Monthly per-bed "
                        "supervision report", fontsize=13, va="top")  # fmt: skip
                ax.text(MARGIN, MARGIN + 22, info, fontsize=8.5, va="top")
                ax.text(PAGE_W - MARGIN, PAGE_H - MARGIN + 6, f"第 {n} / {len(pages)} 页  "
                        f"{report.scope} {report.month}", fontsize=7, va="top",
                        ha="right", color="0.35")  # fmt: skip
                _draw(ax, rows, MARGIN + HEADER_H)
                pdf.savefig(fig)
    return buf.getvalue()


def _draw(ax: object, rows: Sequence[Row], top: float) -> None:
    """Draw one page's rows from ``top``: texts, shaded header and totals rows, and the
    table rules as one line collection (far fewer artists than a rectangle per cell)."""
    from matplotlib.axes import Axes  # noqa: PLC0415
    from matplotlib.collections import LineCollection  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    assert isinstance(ax, Axes)
    left, right = MARGIN, MARGIN + sum(WIDTHS)
    edges = [MARGIN + sum(WIDTHS[:i]) for i in range(len(WIDTHS) + 1)]
    rules: list[list[tuple[float, float]]] = []
    y = top
    for row in rows:
        if row.kind in ("title", "text", "sign"):
            size = {"title": FONT + 1.5, "text": FONT, "sign": FONT + 2}[row.kind]
            gap = 14.0 if row.kind == "sign" else 0.0
            for i, text in enumerate(row.lines[0]):
                ax.text(MARGIN, y + gap / 2 + 3 + i * size * 1.5, text, fontsize=size, va="top")
            y += row.height
            continue
        shade = {"head": "0.88", "total": "0.94"}.get(row.kind)
        if shade is not None:
            ax.add_patch(Rectangle((left, y), right - left, row.height, facecolor=shade,
                                   linewidth=0))  # fmt: skip
        bottom = y + row.height
        rules += [[(left, y), (right, y)], [(left, bottom), (right, bottom)]]
        rules += [[(x, y), (x, bottom)] for x in edges]
        for cell, x in zip(row.lines, edges, strict=False):
            for i, text in enumerate(cell):
                if text:
                    ax.text(x + PAD, y + PAD + i * LINE, text, fontsize=FONT, va="top")
        y = bottom
    ax.add_collection(LineCollection(rules, colors="0.3", linewidths=0.4))
