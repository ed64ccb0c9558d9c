"""The commissioning-record PDF: Chinese text drawn with the installed CJK font (no missing
glyph: pytest turns matplotlib's "Glyph ... missing" warning into an error), still produced
without one; every step of every record, people by display name, every cell wrapped (no
text cut), as many pages as needed, and signature lines. The text is read back with
pdftotext (poppler-utils, installed by scripts/setup.sh)."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.acceptance import STEPS, records_pdf
from gateway.reports.commissioning_pdf import Person, em, wrap
from gateway.reports.fonts import BASE_FAMILY, cjk_font_family, font_families

NOTES = "按钮安装在床头右侧，老人已确认会使用。"
AT = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
PEOPLE = {"u-1": Person("张丽", "installer"), "u-2": Person("王建国", "installer"),
          "u-3": Person(None, "installer")}  # fmt: skip


def pdf_text(pdf: bytes) -> str:
    """The PDF's text in drawing order (pdftotext -raw: a cell's lines stay together),
    pages separated by form feeds."""
    out = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True,
        check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.decode("utf-8")


def _record(**changes: Any) -> dict[str, Any]:
    record = {
        "record_id": 1, "test_id": "at-1", "device_id": "btn-SN-1", "kind": "button",
        "bed_code": "BED-0101", "installer": "u-1", "started_at": AT, "finished_at": AT,
        "result": "passed", "steps": [{"name": "press", "status": "passed", "latency_ms": 84.0}],
        "family_notified": False, "notes": NOTES,
    }  # fmt: skip
    record.update(changes)
    return record


def _fonts(pdf: bytes) -> set[str]:
    return {m.decode() for m in re.findall(rb"/BaseFont /[A-Z]{6}\+([A-Za-z0-9-]+)", pdf)}


def test_chinese_notes_are_drawn_with_the_cjk_font_without_missing_glyphs() -> None:
    cjk = cjk_font_family()  # the test command installs one (scripts/setup.sh): never skipped
    assert cjk is not None, "no CJK font: install fonts-wqy-microhei (scripts/setup.sh does)"
    assert font_families() == [BASE_FAMILY, cjk]
    pdf = records_pdf("demo-nh", [_record(), _record(record_id=2, notes="x" * 300)])
    assert pdf.startswith(b"%PDF-")
    fonts = _fonts(pdf)
    assert cjk.replace(" ", "") in fonts  # the CJK glyphs come from it ...
    assert "DejaVuSans" in fonts  # ... the Latin ones still from DejaVu Sans


def test_without_a_cjk_font_the_pdf_is_still_produced() -> None:
    pdf = records_pdf("demo-nh", [_record()], families=[BASE_FAMILY])
    fonts = _fonts(pdf)
    assert pdf.startswith(b"%PDF-") and "DejaVuSans" in fonts
    cjk = cjk_font_family()
    assert cjk is None or cjk.replace(" ", "") not in fonts  # boxes (matplotlib's last resort)


def _many() -> list[dict[str, Any]]:
    """40 records over every device kind, with all of each kind's steps and long notes."""
    kinds = sorted(STEPS)
    out = []
    for i in range(40):
        kind = kinds[i % len(kinds)]
        steps = [{"name": name, "status": "passed" if j % 3 else "failed", "latency_ms": 80.0 + j}
                 for j, (name, _) in enumerate(STEPS[kind])]  # fmt: skip
        notes = f"记录{i:02d}：" + NOTES * (1 + i % 4) + f" end-of-note-{i:02d}"
        out.append(
            _record(
                record_id=i,
                test_id=f"at-{i}",
                device_id=f"dev-{i:02d}-SN-LONGSERIAL",
                kind=kind,
                bed_code=f"BED-{i:04d}",
                installer=f"u-{1 + i % 3}",
                finished_at=AT + timedelta(minutes=i),
                steps=steps,
                notes=notes,
            )
        )
    return out


def test_every_step_every_note_and_the_names_are_in_the_pdf_on_several_pages() -> None:
    records = _many()
    pdf = records_pdf("demo-nh", records, people=PEOPLE, site_name="阳光养老院", printed_at=AT)
    text = pdf_text(pdf)
    pages = text.split("\f")
    assert len([p for p in pages if p.strip()]) >= 3  # multi-page, nothing dropped
    assert "第 1/" in pages[0] and "设备调试验收记录" in pages[0] and "阳光养老院" in pages[0]
    squeezed = re.sub(r"\s+", "", text)
    for r in records:
        for step in r["steps"]:  # every step of every record, the last ones included
            assert f"{step['name']}:" in text, step
        assert r["device_id"] in squeezed  # wrapped, never cut
        assert f"end-of-note-{r['record_id']:02d}" in squeezed
        assert f"记录{r['record_id']:02d}：" in squeezed
    per_record = sum(len(r["steps"]) for r in records)
    assert len(re.findall(r"\(\d+ ms\)", text)) == per_record
    assert "张丽" in text and "王建国" in text
    assert not re.search(r"\bu-[123]\b", text)  # no user ids; the unnamed one by role
    assert "安装人员签字" in pages[-1 if pages[-1].strip() else -2]
    assert "运营方 / 站点代表签字" in text and "日期" in text
    assert "2026-11-2309:00(UTC+8)" in squeezed  # the site's zone, named


def test_english_on_request() -> None:
    pdf = records_pdf("demo-nh", [_record()], people=PEOPLE, lang="en", printed_at=AT)
    text = pdf_text(pdf)
    assert "Commissioning records" in text and "张丽" in text
    assert "press: passed (84 ms)" in text
    assert "Installer's signature" in text and "site representative" in text
    assert "Date" in text and "(UTC+8)" in text


def test_a_row_taller_than_a_page_continues_on_the_next() -> None:
    notes = " ".join(f"word{i:04d}" for i in range(1500))
    pdf = records_pdf("demo-nh", [_record(notes=notes)], people=PEOPLE)
    squeezed = re.sub(r"\s+", "", pdf_text(pdf))
    assert all(f"word{i:04d}" in squeezed for i in range(1500))


def test_wrap_never_loses_a_character_and_respects_the_width() -> None:
    text = (
        "按钮安装在床头右侧，老人已确认会使用。 Some English words and AVeryLongTokenWithoutSpaces"
    )
    for width in (4.0, 9.5, 20.0):
        lines = wrap(text, width)
        assert all(em(line) <= width for line in lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert wrap("a\nb", 10) == ["a", "b"]
