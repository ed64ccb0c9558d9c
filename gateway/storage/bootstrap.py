"""The superuser statements that set up the project's private PostgreSQL (roles, database,
extension), as text for ``psql`` (``gateway.localsvc`` runs them over the Unix socket).

Identifiers are checked by the caller (``[a-z_][a-z0-9_]*``); passwords are quoted
here.
"""

from __future__ import annotations

CREATE_TIMESCALEDB = "CREATE EXTENSION IF NOT EXISTS timescaledb"


def database_exists(name: str) -> str:
    return f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 (checked ident)


def create_database(name: str, owner: str) -> str:
    return f'CREATE DATABASE "{name}" OWNER "{owner}"'


def hand_over_database(name: str, owner: str) -> str:
    return f'ALTER DATABASE "{name}" OWNER TO "{owner}"'


def reassign_owned(old: str, new: str) -> str:
    return f'REASSIGN OWNED BY "{old}" TO "{new}"'


def ensure_login_role(role: str, password: str) -> str:
    """Create the login role, or set its password when it exists."""
    pw = password.replace("'", "''")
    return (
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{pw}'; "
        f"ELSE ALTER ROLE \"{role}\" PASSWORD '{pw}'; END IF; END$$;"
    )
