"""The sign-in throttle of a real active/standby pair of gateway processes (gateway.lease):
both serve the API, so an attacker alternating between them, hammering both at once, or
waiting for a restart gets no more guesses than the limit (counts in PostgreSQL,
gateway.api.login_throttle). Default throttle settings but for a roomy per-address limit
(every request here comes from 127.0.0.1)."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.api.auth import create_user
from tests.support import Broker, Database, GatewayProcess, gateway_settings

pytestmark = pytest.mark.integration

ENV = {
    "SAFEHOME_FAILOVER__ENABLED": "true",
    "SAFEHOME_API__LOGIN_MAX_FAILURES_PER_ADDRESS": "1000",
    "SAFEHOME_API__LOGIN_QUEUE_MAX": "100",
}
PASSWORD = "duty-password-" + uuid.uuid4().hex[:12]
LIMIT = 5  # api.login_max_failures_per_user, default


def _base(gw: GatewayProcess) -> str:
    for line in gw.log_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "api listening":
            return f"http://127.0.0.1:{rec['port']}"
    raise AssertionError("no api port in the log")


def _sign_in(gw: GatewayProcess, username: str, password: str) -> httpx.Response:
    data = {"username": username, "password": password}
    return httpx.post(f"{_base(gw)}/auth/token", data=data, timeout=60)


def _logins(gw: GatewayProcess, result: str) -> float:
    text = httpx.get(f"{_base(gw)}/metrics", timeout=10).text
    found = re.search(rf'^safehome_api_logins_total{{result="{result}"}} (\S+)$', text, re.M)
    assert found, text
    return float(found.group(1))


@contextmanager
def _gateway(gw: GatewayProcess, wait_for: str = "broker connected") -> Iterator[GatewayProcess]:
    try:
        yield gw.start(wait_for)
    finally:
        gw.stop()


def test_an_active_standby_pair_shares_one_limit_and_a_restart_keeps_it(
    db: Database, broker: Broker, tmp_path: Path
) -> None:
    users = ["duty-" + uuid.uuid4().hex[:8], "nurse-" + uuid.uuid4().hex[:8]]
    with db.connect() as conn:
        for name in users:
            create_user(conn, name, "admin", PASSWORD)
    duty, nurse = users
    settings = gateway_settings(db, broker)
    with (
        _gateway(GatewayProcess(settings, tmp_path / "a.log", ENV)) as active,
        _gateway(
            GatewayProcess(settings, tmp_path / "b.log", ENV),
            "standby: waiting for the lease",
        ) as standby,
    ):
        # 1. Alternating: 3 guesses on the active and 2 on the standby lock the account on
        # both, for the right password too.
        for gw in (active, standby, active, standby, active):
            assert _sign_in(gw, duty, "wrong-guess").status_code == 401
        for gw in (active, standby):
            resp = _sign_in(gw, duty, PASSWORD)
            assert resp.status_code == 429, resp.text
            assert 0 < int(resp.headers["retry-after"]) <= 300

        # 2. Both at once: 30 parallel wrong guesses, half on each process.
        codes: list[int] = []
        lock = threading.Lock()

        def guess(i: int) -> None:
            resp = _sign_in((active, standby)[i % 2], nurse, f"guess-{i}")
            with lock:
                codes.append(resp.status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert (codes.count(401), codes.count(429)) == (LIMIT, 30 - LIMIT), codes
        # Password checks that ran over both processes: both accounts' limits, no more.
        assert _logins(active, "failed") + _logins(standby, "failed") == 2 * LIMIT

    # 3. Both processes restarted: the counts are in the database, not in their memory.
    with _gateway(GatewayProcess(settings, tmp_path / "a2.log", ENV)) as again:
        for name in users:
            resp = _sign_in(again, name, PASSWORD)
            assert resp.status_code == 429, resp.text
        assert _logins(again, "failed") == 0.0 and _logins(again, "throttled") == 2.0
        logs = again.log_text() + active.log_text() + standby.log_text()
    assert "sign-in locked out" in logs
    assert not any(name in logs for name in users)  # no user names in the logs
