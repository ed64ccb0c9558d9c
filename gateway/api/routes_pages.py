"""The web pages: the staff console (``/``), the family view (``/family``) and their files.

The pages are static (plain HTML, CSS and JavaScript, no build step, nothing from a CDN) and
carry no data: every figure they show comes from the role-checked API with the signed-in
user's token. So these routes are declared ``PUBLIC``. Only the files in ``static/`` named
in :data:`STATIC_FILES` are served; any other name answers 404 (no directory walking).
A strict Content-Security-Policy allows scripts, styles and requests from this origin only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from gateway.api.deps import PUBLIC

STATIC_DIR = Path(__file__).parent / "static"

STATIC_FILES: dict[str, str] = {
    "console.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console-timer.js": "text/javascript; charset=utf-8",  # the reconcile clock (a worker)
    "family.html": "text/html; charset=utf-8",
    "family.js": "text/javascript; charset=utf-8",
    "family.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",  # the message catalogue (zh-CN, en)
    "i18n-family.js": "text/javascript; charset=utf-8",  # family ratings, away mode
    "favicon.svg": "image/svg+xml",
    # Call-centre tools (gateway.telephony): click-to-call, call outcomes, incident notes.
    "console-calls.js": "text/javascript; charset=utf-8",
    "console-calls.css": "text/css; charset=utf-8",
    "i18n-calls.js": "text/javascript; charset=utf-8",
    "i18n-worker-calls.js": "text/javascript; charset=utf-8",  # the worker page's calls
    "i18n-kit-door.js": "text/javascript; charset=utf-8",  # "door not opened for days"
    "i18n-visits.js": "text/javascript; charset=utf-8",  # 探访关爱 pages and console panel
    "i18n-clock.js": "text/javascript; charset=utf-8",  # the demo clock label (演示时钟)
}

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_file(name: str) -> FileResponse:
    """One of the known static files, with its type and the security headers."""
    media_type = STATIC_FILES.get(name)
    path = STATIC_DIR / name
    if media_type is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


router = APIRouter(tags=["pages"])


@router.get("/", summary="Staff console (static page; data from the API)",
            include_in_schema=False, **PUBLIC)  # fmt: skip
def console() -> FileResponse:
    return static_file("console.html")


@router.get("/family", summary="Family view (static page; data from the API)",
            include_in_schema=False, **PUBLIC)  # fmt: skip
def family() -> FileResponse:
    return static_file("family.html")


@router.get("/static/{name}", summary="Console and family view files",
            include_in_schema=False, **PUBLIC)  # fmt: skip
def static(name: str) -> FileResponse:
    return static_file(name)
