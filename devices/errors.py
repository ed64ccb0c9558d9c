"""Errors raised by the ``devices`` package.

One base class, :class:`DevicesError`, with structured subclasses. Messages and
attributes are safe to log: they never contain whole payloads, passwords or personal data.
"""

from __future__ import annotations


class DevicesError(Exception):
    """Base class of every error raised by ``devices``."""


class ManifestError(DevicesError):
    """A site manifest file is missing, unreadable or invalid.

    ``path`` is the file (when loaded from one), ``field`` the offending key path.
    """

    def __init__(self, detail: str, *, path: str | None = None, field: str | None = None) -> None:
        self.detail = detail
        self.path = path
        self.field = field
        where = f"{path}: " if path else ""
        at = f" (at {field})" if field else ""
        super().__init__(f"{where}{detail}{at}")


class ScenarioError(DevicesError):
    """A scenario file is invalid, or an incident cannot be bound to a device."""

    def __init__(
        self, detail: str, *, path: str | None = None, incident: int | None = None
    ) -> None:
        self.detail = detail
        self.path = path
        self.incident = incident
        where = f"{path}: " if path else ""
        at = f" (incident #{incident})" if incident is not None else ""
        super().__init__(f"{where}{detail}{at}")
