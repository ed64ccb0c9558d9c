"""The API documentation served by the gateway itself (issue 11 §7): Swagger UI at ``/docs``
and ReDoc at ``/redoc`` with their scripts and styles from this gateway (the files shipped in
the ``fastapi-offline`` package), so they work on a site network without internet; and the
favicon (``/favicon.ico``, the console's icon) instead of a 404.

The pages carry no data (the OpenAPI document is public at ``/openapi.json``): ``PUBLIC``.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from gateway.api.deps import PUBLIC

router = APIRouter(tags=["pages"])

ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOC_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}
FAVICON = Path(__file__).parent / "static" / "favicon.svg"
TITLE = "安居守护 Safe-Home Guardian API"


@router.get("/docs", include_in_schema=False, **PUBLIC)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=TITLE,
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
    )


@router.get("/redoc", include_in_schema=False, **PUBLIC)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=TITLE,
        redoc_js_url="/docs-assets/redoc.standalone.js",
        redoc_favicon_url="/favicon.ico",
        with_google_fonts=False,
    )


@router.get("/docs-assets/{name}", include_in_schema=False, **PUBLIC)
def docs_asset(name: str) -> FileResponse:
    media_type = DOC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    return FileResponse(ASSETS / name, media_type=media_type,
                        headers={"Cache-Control": "max-age=86400"})  # fmt: skip


@router.get("/favicon.ico", include_in_schema=False, **PUBLIC)
def favicon() -> FileResponse:
    return FileResponse(FAVICON, media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=86400"})  # fmt: skip
