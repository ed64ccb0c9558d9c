"""Start-up that fails part-way closes everything it opened, in reverse (issue 14 §6).

Real PostgreSQL and Mosquitto. The API is the last thing the gateway starts; an unusable TLS
certificate makes it fail after the database pools, the workflow workers, analysis, ingest
and the MQTT session are all up. Nothing may be left behind: no database connection of the
gateway, no thread, no task.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import uuid
from pathlib import Path

import pytest

from gateway.runtime import Runtime
from tests.support import Broker, Database, gateway_settings, wait_until

pytestmark = pytest.mark.integration


def _gateway_connections(db: Database, application_name: str) -> int:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_start_up_failing_part_way_closes_everything_it_opened(
    db: Database, broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "api.pem"
    bad.write_text("not a certificate\n")
    name = "gw-startup-" + uuid.uuid4().hex[:8]
    settings = gateway_settings(
        db,
        broker,
        SAFEHOME_DATABASE__APPLICATION_NAME=name,
        SAFEHOME_API__TLS_CERTFILE=str(bad),
        SAFEHOME_API__TLS_KEYFILE=str(bad),
    )
    threads_before = set(threading.enumerate())
    runtime = Runtime(settings)
    opened: dict[str, int] = {}

    async def start() -> None:
        def watch_connections() -> None:  # what start-up had open before it failed
            opened["max"] = 0
            while not stop.is_set():
                opened["max"] = max(opened["max"], _gateway_connections(db, name))
                stop.wait(0.05)

        stop = threading.Event()
        watcher = threading.Thread(target=watch_connections, daemon=True)
        watcher.start()
        try:
            async with runtime:
                pytest.fail("start-up should have failed")
        finally:
            stop.set()
            watcher.join(5)

    with pytest.raises(ssl.SSLError):
        asyncio.run(start())

    # It failed part-way: everything before the API server had started...
    assert runtime.session is not None and runtime.ingest is not None
    assert runtime.analysis is not None and runtime.recovery is not None
    assert runtime.workflow_pool is not None and runtime.api_pool is not None
    assert opened["max"] >= 3
    # ... and all of it is closed again.
    assert runtime.workflow_pool.closed and runtime.api_pool.closed
    wait_until(lambda: _gateway_connections(db, name) == 0, 10, "the gateway's connections closed")
    left = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert left == [], f"threads left running: {[t.name for t in left]}"
    assert "start-up failed; closing what was opened" in caplog.text
