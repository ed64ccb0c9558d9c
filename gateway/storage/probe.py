"""Is the database there: readiness (one ``SELECT 1`` through the API's pool, bounded) and
start-up's wait."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout


def database_ready(pool: ConnectionPool[Any], timeout_s: float) -> bool:
    """Whether a pooled connection answers ``SELECT 1`` within about ``timeout_s``."""
    try:
        with pool.connection(timeout=timeout_s) as conn:
            conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}".encode())
            conn.execute(b"SELECT 1")
    except (psycopg.Error, PoolTimeout):
        return False
    return True


def database_answers(conninfo: str) -> None:
    """Connect and run ``SELECT 1`` (start-up's wait for the database); raises
    :class:`psycopg.OperationalError` while it does not answer."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(b"SELECT 1")
