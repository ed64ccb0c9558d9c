"""QR labels for bed codes and devices: a PNG per code and a printable A4 PDF sheet.

A label carries a code and nothing else (一人一床一码: the code is the key; names, rooms and
phone numbers never go on a sticker that hangs on a bed). The QR code encodes exactly the
printed code text, so any phone scanner reads it back. QR codes come from ``segno`` (pure
Python, always a full QR symbol, never a Micro QR that phones cannot read); Pillow draws the
labels and writes the PDF.

Sheet layout: A4 portrait at 300 dpi, 3 × 8 labels of 63.5 × 33.9 mm with 8 mm side and
13 mm top margins (the common 24-up label stock); pages as many as needed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont

DPI = 300
MM = DPI / 25.4
A4_PX = (round(210 * MM), round(297 * MM))  # 2480 x 3508
COLUMNS, ROWS = 3, 8
LABEL_PX = (round(63.5 * MM), round(33.9 * MM))
MARGIN_PX = (round(8 * MM), round(13 * MM))
PER_PAGE = COLUMNS * ROWS
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class LabelError(Exception):
    """No codes, or a code that cannot go on a label."""


@dataclass(frozen=True, slots=True)
class Label:
    """One label: the code (QR payload and printed text) and a short kind caption."""

    code: str
    caption: str  # "BED" or "DEVICE <kind>": what the sticker is for, never who

    def __post_init__(self) -> None:
        if not self.code or len(self.code) > 64 or any(c.isspace() for c in self.code):
            raise LabelError(f"not a label code: {self.code!r}")


def qr_image(payload: str, box_px: int) -> Image.Image:
    """A black-on-white QR code of ``payload`` fitting in ``box_px`` square (quiet zone 4)."""
    qr = segno.make_qr(payload, error="m")
    modules = [list(row) for row in qr.matrix]
    n = len(modules) + 8  # quiet zone of 4 modules each side
    scale = max(1, box_px // n)
    img = Image.new("1", (n, n), 255)
    px = img.load()
    assert px is not None
    for y, row in enumerate(modules):
        for x, bit in enumerate(row):
            if bit:
                px[x + 4, y + 4] = 0
    return img.resize((n * scale, n * scale), Image.Resampling.NEAREST)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_label(label: Label) -> Image.Image:
    """One label as a 1-bit image of :data:`LABEL_PX`: QR on the left, code on the right."""
    w, h = LABEL_PX
    img = Image.new("1", (w, h), 255)
    qr = qr_image(label.code, h - 20)
    img.paste(qr, (10, (h - qr.height) // 2))
    draw = ImageDraw.Draw(img)
    x = qr.width + 30
    room = w - x - 10
    size = 64
    font = _font(size)
    while size > 20 and draw.textlength(label.code, font=font) > room:
        size -= 4
        font = _font(size)
    draw.text((x, h // 2 - size), label.code, fill=0, font=font)
    draw.text((x, h // 2 + 16), label.caption, fill=0, font=_font(34))
    return img


def sheets(labels: Sequence[Label]) -> list[Image.Image]:
    """A4 pages (300 dpi) with up to :data:`PER_PAGE` labels each."""
    if not labels:
        raise LabelError("no codes to print")
    pages = []
    for start in range(0, len(labels), PER_PAGE):
        page = Image.new("1", A4_PX, 255)
        for i, label in enumerate(labels[start : start + PER_PAGE]):
            col, row = i % COLUMNS, i // COLUMNS
            x = MARGIN_PX[0] + col * LABEL_PX[0]
            y = MARGIN_PX[1] + row * LABEL_PX[1]
            page.paste(render_label(label), (x, y))
        pages.append(page)
    return pages


def write_pdf(labels: Sequence[Label], path: Path) -> int:
    """Write the labels as an A4 PDF sheet; return the number of pages."""
    pages = sheets(labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages[0].save(path, "PDF", resolution=float(DPI), save_all=True, append_images=pages[1:])
    return len(pages)


def png_name(code: str) -> str:
    """The file name of a code's PNG (codes are ids, but never trust a path component)."""
    return _SAFE.sub("_", code) + ".png"


def write_pngs(labels: Sequence[Label], directory: Path) -> list[Path]:
    """One PNG label per code in ``directory``; return the paths."""
    if not labels:
        raise LabelError("no codes to print")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for label in labels:
        path = directory / png_name(label.code)
        render_label(label).save(path, "PNG", dpi=(DPI, DPI))
        paths.append(path)
    return paths


def write_labels(labels: Sequence[Label], out: Path) -> list[Path]:
    """``out`` ending in ``.pdf``: the sheet only; otherwise a directory with a PNG per code
    and ``labels.pdf``. Returns the files written."""
    if out.suffix.lower() == ".pdf":
        write_pdf(labels, out)
        return [out]
    paths = write_pngs(labels, out)
    sheet = out / "labels.pdf"
    write_pdf(labels, sheet)
    return [*paths, sheet]


def config_qr_png(payload: str, path: Path, box_px: int = 600) -> Path:
    """A plain QR PNG of a device configuration (for devices that scan their settings): it
    holds the device's password, so the file is created 0600 (never chmod-ed afterwards)."""
    from gateway.privatefile import write_private  # noqa: PLC0415

    buf = io.BytesIO()
    qr_image(payload, box_px).save(buf, "PNG")
    write_private(path, buf.getvalue())
    return path


def terminal_qr(payload: str) -> str:
    """``payload`` as a QR code drawn with half-block characters (two modules per line)."""
    qr = segno.make_qr(payload, error="l")
    rows = [[0] * 4 + list(r) + [0] * 4 for r in qr.matrix]
    width = len(rows[0])
    blank = [0] * width
    rows = [blank] * 4 + rows + [blank] * 4
    if len(rows) % 2:
        rows.append(blank)
    chars = {(0, 0): "█", (1, 0): "▄", (0, 1): "▀", (1, 1): " "}
    lines = []
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        lines.append("".join(chars[(t, b)] for t, b in zip(top, bottom, strict=True)))
    return "\n".join(lines)
