"""The commissioning-record PDF with Chinese text: drawn with the installed CJK font (no
missing glyph: pytest turns matplotlib's "Glyph ... missing" warning into an error), and
still produced without one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.acceptance import NOTES_PDF_CHARS, records_pdf
from gateway.reports.fonts import BASE_FAMILY, cjk_font_family, font_families

NOTES = "按钮安装在床头右侧，老人已确认会使用。"


def _record(**changes: Any) -> dict[str, Any]:
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    record = {
        "record_id": 1, "test_id": "at-1", "device_id": "btn-SN-1", "kind": "button",
        "bed_code": "BED-0101", "installer": "u-1", "started_at": at, "finished_at": at,
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
    assert NOTES_PDF_CHARS < 300  # long notes are cut in the table (the CSV keeps them)
