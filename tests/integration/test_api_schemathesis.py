"""Schemathesis against the gateway's OpenAPI document (issue 10 §7), real API and database.

Every operation is called with generated requests (valid ones, then invalid ones) under the
token of each role the operation allows (``x-allowed-roles``) and of one role it does not.
Checked on every answer: no 5xx, a documented answer matches its schema, and no data of
another site (or, for a family member, of another resident) in any body. Time-bounded:
a fixed number of examples per operation, role and mode (derandomized, so a run is
reproducible); the live stream is left out (it never ends; tests/integration/test_live_feed.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.api.auth import PUBLIC_ROLE, ROLES_KEY, create_user
from tests.support import (
    Broker,
    Database,
    InProcessGateway,
    access_token,
    broker_env,
    gateway_settings,
    make_site,
)

pytestmark = pytest.mark.integration

SECRET = "fuzz-" + uuid.uuid4().hex + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex[:12]
EXAMPLES = 2  # per operation, role and generation mode
SKIP = {("GET", "/incidents/stream"), ("POST", "/auth/logout")}  # endless / ends the token
# What a caller of site-a must never see: any id of site-b; a family member, also the other
# resident of site-a.
FOREIGN = {
    "duty_staff": ("site-b",),
    "supervisor": ("site-b",),
    "installer": ("site-b",),
    "family": ("site-b", "site-a-r1", "ELD-site-a-0001"),
    "admin": (),
}


@pytest.fixture
def gateway(db: Database, broker: Broker) -> Iterator[tuple[str, dict[str, str]]]:
    make_site(db, broker, site_id="site-a", beds=2)
    make_site(db, broker, site_id="site-b", beds=1)
    names = {"duty_staff": "duty-a", "supervisor": "sup-a", "installer": "inst-a",
             "admin": "root", "family": "fam-a"}  # fmt: skip
    with db.connect() as conn:
        for role in ("duty_staff", "supervisor", "installer"):
            create_user(conn, names[role], role, PASSWORD, site_id="site-a")
        create_user(conn, "root", "admin", PASSWORD)
        create_user(conn, "fam-a", "family", PASSWORD, residents=["site-a-r0"])
    settings = gateway_settings(
        db, broker, SAFEHOME_API__JWT_SECRET=SECRET, **broker_env(broker),
        # generated sign-ins must not lock the run out of its own tokens
        SAFEHOME_API__LOGIN_MAX_FAILURES_PER_ADDRESS="100000",
    )  # fmt: skip
    with InProcessGateway(settings) as gw:
        tokens = {role: access_token(gw.api_url, name, PASSWORD) for role, name in names.items()}
        yield gw.api_url, tokens


def _no_foreign_data(role: str) -> Any:
    def no_foreign_data(ctx: Any, response: Any, case: Any) -> None:
        text = response.text if isinstance(response.text, str) else ""
        for marker in FOREIGN[role]:
            assert marker not in text, f"{role} got {marker!r} from {case.operation.label}"

    return no_foreign_data


def _fuzz(op: Any, mode: Any, url: str, headers: dict[str, str], checks: list[Any]) -> None:
    """Run EXAMPLES generated requests of ``op`` with these headers and checks."""

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: Any) -> None:
        case.call_and_validate(base_url=url, headers=headers, checks=checks, timeout=30)

    run()


def test_openapi_fuzz_every_operation_with_every_role(
    gateway: tuple[str, dict[str, str]],
) -> None:
    url, tokens = gateway
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=30)
    ran: dict[str, int] = {}
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        allowed = op.definition.raw.get(ROLES_KEY, [])
        roles = list(tokens) if allowed == [PUBLIC_ROLE] else [r for r in allowed if r in tokens]
        roles += [next(r for r in tokens if r not in roles)] if len(roles) < len(tokens) else []
        for role in roles:
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            checks = [not_a_server_error, response_schema_conformance, _no_foreign_data(role)]
            # Invalid requests once per operation (the answer does not depend on the role).
            modes = [schemathesis.GenerationMode.POSITIVE]
            if role == roles[0]:
                modes.append(schemathesis.GenerationMode.NEGATIVE)
            for mode in modes:
                try:
                    _fuzz(op, mode, url, headers, checks)
                except Unsatisfiable:
                    # Nothing to make invalid (no parameters, no body): positive runs only.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, op.label
                    continue
                ran[op.label] = ran.get(op.label, 0) + 1
    print(f"schemathesis: {len(ran)} operations, {sum(ran.values())} runs "
          f"in {time.monotonic() - t0:.1f}s")  # fmt: skip
    assert len(ran) >= 40, sorted(ran)
