"""The monthly per-bed supervision report: its pure rules (visits due, totals, wrapping,
pages) and the Chinese PDF, read back with poppler's ``pdftotext`` and rendered to PNG with
``pdftoppm`` (``scripts/setup.sh`` installs poppler-utils)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import InvalidError
from gateway.reports.fonts import BASE_FAMILY, cjk_font_family
from gateway.reports.sla_targets import local_targets
from gateway.supervision.bed_report import (
    INTERNATIONAL,
    SERVICE_KINDS,
    AnswerTarget,
    BedLine,
    BedReport,
    SiteSection,
    add_up,
    answer_target,
    due_days,
    strictest,
    visits_due,
)
from gateway.supervision.bed_report_pdf import (
    HEAD,
    PAGE_H,
    WIDTHS,
    bed_cells,
    district_note,
    layout,
    render_pdf,
    site_note,
    text_width,
    wrap,
)

NOW = datetime(2026, 12, 4, 13, 30, tzinfo=UTC)  # 21:30 in UTC+8


def _line(i: int, *, alarms: int = 2, answered: int = 1) -> BedLine:
    services = {k: (i + n) % 3 for n, k in enumerate(SERVICE_KINDS)}
    return BedLine(f"BED-幸福里社区居家床位-{i:04d}-东区三号楼二单元", f"ELD-{i:05d}", services,
                   visits_done=i % 4, visits_due=4, alarms=alarms, answered_in_target=answered,
                   median_answer_s=42.0, online_s=900.0, in_service_s=1000.0)  # fmt: skip


def _report(
    beds: int, sites: int = 1, targets: list[AnswerTarget] | None = None, **kw: int
) -> BedReport:
    lines = [_line(i, **kw) for i in range(beds)]
    chosen = targets or [INTERNATIONAL] * sites
    sections = [
        SiteSection(f"hc-{n}", f"幸福里居家养老服务中心{n}", "d-east", 28800, lines,
                    add_up(lines, chosen[n].share), chosen[n])
        for n in range(sites)
    ]  # fmt: skip
    scope = "site:hc-0" if sites == 1 else "district:d-east"
    share = strictest(chosen).share
    return BedReport(scope, "2026-11", NOW, 28800, sections,
                     add_up((s.totals for s in sections), share))  # fmt: skip


SLA_FILE = {  # the parsed config/response_targets.toml, as sla_targets reads it
    "default": {"sla": {"basis": "运营合同目标", "basis_en": "operator's contract target",
                        "answered_60s": 0.95, "answered_180s": 0.99}},
    "sites": {"hc-strict": {"sla": {"basis": "居家养老服务合同", "answered_60s": 0.99}}},
}  # fmt: skip


def test_visits_due_follow_the_plan_over_the_days_under_it() -> None:
    assert visits_due({"phone": 7, "home": 30}, 30) == 5 + 1
    assert visits_due({"phone": 7}, 1) == 1  # a started interval is due
    assert visits_due({"phone": 7, "home": 30}, 0) == 0
    assert visits_due({}, 30) == 0
    start = datetime(2026, 10, 31, 16, tzinfo=UTC)  # 2026-11-01 00:00 local
    end = start + timedelta(days=30)
    assert due_days(start, end, start - timedelta(days=99), NOW) == 30  # month over
    assert due_days(start, end, start + timedelta(days=10, hours=1), NOW) == 20  # registered late
    assert due_days(start, end, start, start + timedelta(days=2, hours=3)) == 3  # month running
    assert due_days(start, end, end + timedelta(days=1), NOW) == 0


def test_totals_add_beds_sites_and_judge_the_answer_target() -> None:
    a, b = _line(0, alarms=40, answered=39), _line(1, alarms=0, answered=0)
    t = add_up([a, b])
    assert (t.beds, t.alarms, t.answered_in_target, t.visits_due) == (2, 40, 39, 8)
    assert t.services_total == sum(a.services.values()) + sum(b.services.values())
    assert t.answer_share == 39 / 40 and t.target_met is True  # 97.5 %
    assert add_up([_line(0, alarms=40, answered=38)]).target_met is False
    assert add_up([b]).target_met is None  # no alarms: nothing to judge
    assert add_up([t, t]).beds == 4 and add_up([t, t]).online_rate == 0.9
    assert b.online_rate == 0.9 and add_up([]).online_rate is None


def test_cells_wrap_within_their_column() -> None:
    for cell, width in zip(bed_cells(_line(7)), WIDTHS, strict=True):
        for text in wrap(cell, width - 6):
            assert text_width(text) <= width - 6
    assert wrap("BED-幸福里社区居家床位-0007", 60) == ["BED-", "幸福里社区居家床", "位-0007"]
    assert wrap("Visits done/due", 40) == ["Visits", "done/due"]
    assert wrap("a\nb", 100) == ["a", "b"]


def test_a_long_site_continues_on_more_pages_with_its_header() -> None:
    pages = layout(_report(60))
    assert len(pages) > 2
    for page in pages[1:]:
        if not any(r.kind == "bed" for r in page):
            continue  # the last page may hold only the footnotes and the signature line
        assert page[0].kind == "title" and "续" in page[0].lines[0][0]
        assert page[1] is HEAD
    assert sum(r.kind == "bed" for p in pages for r in p) == 60
    assert pages[-1][-1].kind == "sign"  # the signature and stamp line ends the report
    for page in pages:
        assert sum(r.height for r in page) < PAGE_H


def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    assert shutil.which("pdftotext"), "poppler-utils missing (scripts/setup.sh installs it)"
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return done.stdout


def test_the_pdf_reads_back_with_beds_totals_month_time_and_signature(tmp_path: Path) -> None:
    report = _report(30, sites=2)
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF-")
    text = _pdftotext(pdf, tmp_path)
    pages = text.count("\f")
    assert pages >= 3 and f"第 {pages} / {pages} 页" in text
    for i in (0, 17, 29):
        assert f"ELD-{i:05d}" in text
    assert "BED-" in text and "东区三号楼" in text
    assert "报告月份：2026年11月" in text
    assert "生成时间：2026-12-04 21:30（UTC+8" in text  # the site's zone, not UTC
    assert "本机构合计（30 床）" in text and "总计（60 床）" in text
    total = report.totals
    assert f"{total.visits_done}/{total.visits_due}" in text
    assert f"{total.answered_in_target}/{total.alarms}" in text and "未达标" in text
    assert "监管单位（盖章）" in text and "审核人（签字）" in text
    assert "幸福里居家养老服务中心1" in text and "助浴" in text


def test_a_page_renders_to_png(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(render_pdf(_report(5)))
    assert shutil.which("pdftoppm"), "poppler-utils missing (scripts/setup.sh installs it)"
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", str(path),
                    str(tmp_path / "page")], check=True, timeout=60)  # fmt: skip
    png = next(tmp_path.glob("page*.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > height  # A4 landscape
    assert abs(width / height - 842 / 595) < 0.02


def test_the_cjk_font_is_embedded_and_without_one_the_pdf_is_still_produced() -> None:
    cjk = cjk_font_family()  # scripts/setup.sh installs one: never skipped
    assert cjk is not None, "no CJK font: install fonts-wqy-microhei (scripts/setup.sh does)"
    assert cjk.replace(" ", "").encode() in render_pdf(_report(2))
    fallback = render_pdf(_report(2), families=[BASE_FAMILY])  # boxes for Chinese, no error
    assert fallback.startswith(b"%PDF-") and b"DejaVuSans" in fallback


def test_a_site_is_judged_against_its_own_contract_target_when_configured() -> None:
    own = answer_target(local_targets(SLA_FILE, "hc-1"))  # the default sla table: 95 %
    assert own == AnswerTarget(0.95, "运营合同目标", "operator's contract target", local=True)
    strict = answer_target(local_targets(SLA_FILE, "hc-strict"))
    assert (strict.share, strict.basis, strict.local) == (0.99, "居家养老服务合同", True)
    assert answer_target(local_targets({}, "hc-1")) is INTERNATIONAL  # nothing configured
    assert answer_target(local_targets({"default": {"sla": {"answered_180s": 0.9}}}, "x")) == (
        INTERNATIONAL  # a 180 s target only: the 60 s share falls back to 97.5 %
    )
    assert INTERNATIONAL.share == 0.975 and not INTERNATIONAL.local
    with pytest.raises(InvalidError):
        local_targets({"default": {"sla": {"answered_60s": 95}}}, "hc-1")
    lines = [_line(0, alarms=40, answered=38)]  # 95 %: met under the contract, not at 97.5 %
    assert add_up(lines, own.share).target_met is True
    assert add_up(lines).target_met is False
    assert add_up(lines, strict.share).target_met is False
    assert strictest([own, strict, INTERNATIONAL]) is strict
    assert strictest([own, INTERNATIONAL]) is INTERNATIONAL and strictest([]) is INTERNATIONAL


def test_the_pdf_names_each_sites_target_and_judges_the_district_by_the_strictest(
    tmp_path: Path,
) -> None:
    own = answer_target(local_targets(SLA_FILE, "hc-0"))  # 95 %, operator's contract
    report = _report(2, sites=2, targets=[own, INTERNATIONAL], alarms=20, answered=19)
    first, second = report.sections
    assert first.totals.target_met is True and second.totals.target_met is False  # 95 % each
    assert report.target is INTERNATIONAL and report.totals.target_met is False
    assert site_note(first) == (
        "注：60 秒内响应率目标 95%（运营合同目标）；国际参考 97.5%；本期 95.0%，达标。"
    )
    assert site_note(second) == (
        "注：60 秒内响应率目标 97.5%（国际参考：TSA 英国远程照护行业规范）；本期 95.0%，未达标。"
    )
    assert "最严格（最高）的目标" in district_note(report) and "机构 hc-1" in district_note(report)
    text = _pdftotext(render_pdf(report), tmp_path)
    assert "60 秒内响应率目标 95%（运营合同目标）；国际参考 97.5%" in text
    assert "本期 95.0%，达标" in text and "本期 95.0%，未达标" in text
    assert "总计按各机构中最严格（最高）的目标评判" in text
    lenient = _report(1, targets=[own], alarms=20, answered=19)  # one site, its own 95 %
    assert lenient.totals.target_met is True
    assert "达标" in _pdftotext(render_pdf(lenient), tmp_path).split("本机构合计")[1]
