"""The exit codes of ``safehome`` commands, and the one mapping of failures to them.

A domain error (:mod:`gateway.errors`) raised in a local command maps by its kind
(:func:`exit_code`); an installer command's HTTP answer maps by the status the API gives that
kind (``gateway.installer.client``), to the same code. Documented in
docs/installer-guide.md and in every installer command's ``--help`` (:data:`EXIT_CODES`).
"""

from __future__ import annotations

from enum import IntEnum

from gateway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SafehomeError,
    UnavailableError,
)


class Exit(IntEnum):
    """Exit codes of the installer commands (documented in docs/installer-guide.md)."""

    OK = 0
    FAILED = 1  # the gateway failed or refused for another reason
    USAGE = 2  # bad arguments or bad input (validation, CSV rows)
    UNREACHABLE = 3  # the gateway could not be reached
    AUTH = 4  # not signed in, wrong credentials, sign-in expired
    FORBIDDEN = 5  # signed in, but not allowed (role or site)
    NOT_FOUND = 6  # unknown site, location, bed, resident, device or test
    CONFLICT = 7  # already bound, duplicate code, ...
    TEST_FAILED = 8  # an acceptance test ended without passing


EXIT_CODES = """exit codes:
  0 success            1 gateway failed/refused   2 bad arguments or input
  3 gateway unreachable 4 not signed in / wrong password / sign-in expired
  5 not allowed        6 not found               7 conflict (already bound, duplicate)
  8 acceptance test not passed"""

# A domain error's kind -> its exit code (the first kind it is an instance of).
EXIT_OF_KIND: tuple[tuple[type[SafehomeError], Exit], ...] = (
    (NotFoundError, Exit.NOT_FOUND),
    (ConflictError, Exit.CONFLICT),
    (InvalidError, Exit.USAGE),
    (ForbiddenError, Exit.FORBIDDEN),
    (UnavailableError, Exit.FAILED),
)


def exit_code(exc: SafehomeError) -> Exit:
    return next((code for kind, code in EXIT_OF_KIND if isinstance(exc, kind)), Exit.FAILED)
