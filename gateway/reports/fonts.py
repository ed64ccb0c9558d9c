"""Fonts for matplotlib output that may hold Chinese text (commissioning records: notes,
bed codes, installer names).

matplotlib's bundled DejaVu Sans has no CJK glyphs: Chinese would come out as empty boxes
(with a "Glyph ... missing" warning per character). :func:`font_families` returns the
``font.family`` list to draw with: DejaVu Sans first, then a CJK-capable system font when
one is installed (``scripts/setup.sh`` installs ``fonts-wqy-microhei``), which matplotlib
uses for the glyphs DejaVu lacks. Without one, output still works (boxes for CJK) and the
gap is logged once.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

BASE_FAMILY: Final = "DejaVu Sans"
# File names of CJK fonts, in order of preference (compared lower-case, without - and _).
CJK_FILE_HINTS: Final = (
    "wqymicrohei", "wqyzenhei", "notosanscjk", "sourcehansans", "notoserifcjk",
    "droidsansfallback", "uming", "ukai",
)  # fmt: skip


@functools.cache
def cjk_font_family() -> str | None:
    """The family name of an installed CJK font (registered with matplotlib), or None.

    Looked up once per process from the system's font files: matplotlib's own font cache
    may predate the font's installation.
    """
    from matplotlib import font_manager  # noqa: PLC0415 (only when drawing)

    found: dict[str, str] = {}
    for file in font_manager.findSystemFonts():
        key = Path(file).name.lower().replace("-", "").replace("_", "")
        for hint in CJK_FILE_HINTS:
            if key.startswith(hint) and "mono" not in key:
                found.setdefault(hint, file)
    for hint in CJK_FILE_HINTS:
        if hint not in found:
            continue
        path = found[hint]
        try:
            font_manager.fontManager.addfont(path)
            family = str(font_manager.FontProperties(fname=path).get_name())
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("CJK font unusable", extra={"path": path, "error": str(exc)[:200]})
            continue
        log.info("CJK font for PDFs", extra={"font": family, "path": path})
        return family
    log.warning(
        "no CJK font installed: Chinese text in PDFs shows as empty boxes "
        "(install fonts-wqy-microhei, see scripts/setup.sh)"
    )
    return None


def font_families() -> list[str]:
    """``font.family`` for matplotlib: DejaVu Sans, then a CJK fallback when installed."""
    cjk = cjk_font_family()
    return [BASE_FAMILY] if cjk is None else [BASE_FAMILY, cjk]
