"""Domain errors as HTTP answers: the one place where an error kind becomes a status code.

The body is ``{"detail": ..., "hint": ...}`` (``hint`` only when there is one), the shape
the installer CLI and the pages read.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SafehomeError,
    UnavailableError,
)
from gateway.registry_admin import TooLargeError

# Most specific first: the first kind the error is an instance of gives the status.
STATUS_OF: tuple[tuple[type[SafehomeError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (TooLargeError, 413),
    (InvalidError, 422),
    (ForbiddenError, 403),
    (UnavailableError, 503),
)


def status_of(exc: SafehomeError) -> int:
    return next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)


def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SafehomeError)
    body = {"detail": exc.detail} | ({"hint": exc.hint} if exc.hint else {})
    return JSONResponse(body, status_code=status_of(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SafehomeError, domain_error)
