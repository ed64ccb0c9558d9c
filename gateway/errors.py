"""The domain errors of the gateway: one base, a few kinds, no transport in them.

Domain code (storage repositories, registry rules, the workflow) raises these; the API maps
them to HTTP status codes in one place (``gateway/api/errors.py``) and the CLI maps them to
exit codes in one place. Neither HTTP nor exit codes appear here: a ``hint`` is plain text
for a person ("run `safehome site list`"), usable by both.

Shape after psycopg_pool's ``errors.py``: tiny classes under one base, so a caller can catch
``SafehomeError`` or exactly the kind it handles.
"""

from __future__ import annotations


class SafehomeError(Exception):
    """Base of every error the gateway raises on purpose."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


class NotFoundError(SafehomeError):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class ConflictError(SafehomeError):
    """The request clashes with the current state (duplicate id, wrong state, in use)."""


class InvalidError(SafehomeError):
    """The request itself is wrong (bad code, bad value, bad row)."""


class ForbiddenError(SafehomeError):
    """The caller is known but may not do this."""


class UnavailableError(SafehomeError):
    """A component the request needs is down (database, broker); retry later."""
