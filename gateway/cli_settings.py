"""The settings of a ``safehome`` command (``--config``, the environment, and the private
services' secrets), shared by :mod:`gateway.cli` and its ``cli_*`` command modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.settings import Settings, load_settings


def cli_settings(args: argparse.Namespace, *, local_secrets: bool = False) -> Settings:
    """Settings; with the project's own services (``safehome services``/``demo``), their
    secrets under ``<var_dir>/secrets`` fill in what the environment does not set."""
    config = Path(args.config) if args.config else None
    settings = load_settings(config)
    local = (settings.var_dir / "secrets" / "db_password").exists()
    if local_secrets or (local and settings.database.password is None):
        from gateway.localsvc_admin import settings_with_local_secrets  # noqa: PLC0415

        return settings_with_local_secrets(config)[0]
    return settings
