"""QR labels: PNG per code and an A4 PDF sheet that really decode as images/PDF pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import segno
from PIL import Image

from gateway.installer.labels import (
    A4_PX,
    LABEL_PX,
    PER_PAGE,
    Label,
    LabelError,
    config_qr_png,
    png_name,
    qr_image,
    render_label,
    terminal_qr,
    write_labels,
)


def _labels(n: int) -> list[Label]:
    return [Label(f"BED-{i:04d}", "BED") for i in range(n)]


def _pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    counts = [int(m) for m in re.findall(rb"/Type /Pages\s*/Count (\d+)", data)]
    assert len(counts) == 1, counts
    return counts[0]


def test_directory_output_has_a_png_per_code_and_a_sheet(tmp_path: Path) -> None:
    labels = _labels(PER_PAGE + 1)  # one more than a page holds
    files = write_labels(labels, tmp_path / "out")
    pngs = sorted(p for p in files if p.suffix == ".png")
    assert [p.name for p in pngs] == sorted(f"BED-{i:04d}.png" for i in range(PER_PAGE + 1))
    for p in pngs[:3]:
        with Image.open(p) as im:
            im.load()
            assert im.format == "PNG" and im.size == LABEL_PX
            assert im.info["dpi"][0] == pytest.approx(300, abs=1)
    assert _pdf_pages(tmp_path / "out" / "labels.pdf") == 2


def test_pdf_sheet_pages_are_a4_at_300_dpi(tmp_path: Path) -> None:
    out = tmp_path / "sheet.pdf"
    assert write_labels(_labels(3), out) == [out]
    assert _pdf_pages(out) == 1
    media = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", out.read_bytes())
    assert media is not None
    width_pt, height_pt = float(media.group(1)), float(media.group(2))
    assert width_pt == pytest.approx(595.3, abs=1) and height_pt == pytest.approx(841.9, abs=1)
    assert A4_PX == (2480, 3508)


def test_qr_module_grid_matches_segno_exactly() -> None:
    """The drawn code is segno's matrix, module for module (segno cannot decode, so compare
    the rendered pixels with the matrix it encodes)."""
    payload = "BED-0001"
    img = qr_image(payload, 300)
    matrix = segno.make_qr(payload, error="m").matrix
    n = len(matrix) + 8
    scale = img.width // n
    assert img.width == img.height == n * scale and scale >= 1
    px = img.load()
    assert px is not None
    for y, row in enumerate(matrix):
        for x, bit in enumerate(row):
            cx, cy = (x + 4) * scale + scale // 2, (y + 4) * scale + scale // 2
            assert (px[cx, cy] == 0) == bool(bit), (x, y)
    # The quiet zone is white all round.
    assert all(px[i, scale] == 255 for i in range(img.width))


def test_labels_are_full_qr_not_micro_qr() -> None:
    # segno.make() would choose a Micro QR for short codes; phones cannot read those.
    assert len(segno.make_qr("ABC", error="m").matrix) >= 21


def test_label_carries_only_the_code(tmp_path: Path) -> None:
    with pytest.raises(LabelError):
        Label("Wang Fang", "BED")  # a name with a space is not a code
    with pytest.raises(LabelError):
        Label("", "BED")
    img = render_label(Label("ELD-0001", "BED"))
    assert img.size == LABEL_PX and img.mode == "1"


def test_no_codes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="no codes"):
        write_labels([], tmp_path / "x.pdf")


def test_png_names_cannot_escape_the_directory() -> None:
    assert png_name("../etc/passwd") == ".._etc_passwd.png"
    assert "/" not in png_name("a/b")


def test_config_qr_png_and_terminal_qr(tmp_path: Path) -> None:
    payload = '{"device_id":"d1","mqtt":{"password":"p"}}'
    path = config_qr_png(payload, tmp_path / "cfg.png")
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.width == im.height >= 100
    text = terminal_qr(payload)
    lines = text.splitlines()
    n = len(segno.make_qr(payload, error="l").matrix) + 8
    assert len(lines) == (n + 1) // 2
    assert {len(line) for line in lines} == {n}
    assert set(text) <= {"█", "▀", "▄", " ", "\n"}
