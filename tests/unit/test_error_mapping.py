"""Domain errors become HTTP status codes in one place (``gateway.api.errors``) and exit
codes in one place (``gateway.installer.exits``); every installer command the parser names
is in the typed command table."""

from __future__ import annotations

import pytest

from gateway.api.errors import status_of
from gateway.cli import build_parser
from gateway.commissioning import CommissioningError
from gateway.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SafehomeError,
    UnavailableError,
)
from gateway.installer import commands
from gateway.installer.exits import Exit, exit_code
from gateway.installer.parser import COMMAND_NAMES
from gateway.registry_admin import TooLargeError


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFoundError("unknown bed 'B1'"), 404, Exit.NOT_FOUND),
        (ConflictError("bed code in use"), 409, Exit.CONFLICT),
        (InvalidError("bad code"), 422, Exit.USAGE),
        (TooLargeError("the CSV is too large"), 413, Exit.USAGE),
        (CommissioningError("missing [site] table"), 422, Exit.USAGE),
        (ForbiddenError("not your site"), 403, Exit.FORBIDDEN),
        (UnavailableError("broker down"), 503, Exit.FAILED),
        (SafehomeError("something else"), 500, Exit.FAILED),
    ],
)
def test_each_kind_has_one_status_and_one_exit_code(
    error: SafehomeError, status: int, code: Exit
) -> None:
    assert status_of(error) == status
    assert exit_code(error) is code


def test_every_installer_command_is_in_the_table() -> None:
    build_parser()
    assert COMMAND_NAMES, "the parser registered no installer command"
    assert set(commands.COMMANDS) >= COMMAND_NAMES, COMMAND_NAMES - set(commands.COMMANDS)
    crud = {f"{noun}_{verb}" for noun in ("site", "location", "bed", "resident")
            for verb in ("list", "show", "create", "edit")}  # fmt: skip
    assert crud <= COMMAND_NAMES
