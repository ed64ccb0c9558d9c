"""`safehome services up` (and the demo): the local broker is managed by the gateway, so an
installer can register devices against the local services."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from gateway.brokersync import mqtt_login_code
from gateway.commissioning import apply_site_definition
from gateway.localsvc import free_port
from gateway.localsvc_admin import LocalServices, settings_with_local_secrets

pytestmark = pytest.mark.integration

SITE = {
    "site": {"id": "loc-a", "name": "Local", "kind": "nursing_home"},
    "locations": [{"id": "loc-a-r1", "kind": "room", "label": "101"}],
    "beds": [{"id": "loc-a-b1", "code": "BED-LOC-A-1", "location": "loc-a-r1"}],
    "devices": [{"id": "loc-a-btn1", "kind": "button", "model": "B1", "serial": "S-1",
                 "bed": "loc-a-b1", "location": "loc-a-r1"}],
}  # fmt: skip


def test_local_services_let_the_gateway_manage_the_broker(
    services_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = services_root / ("var-" + uuid.uuid4().hex[:8])
    for key, value in {"VAR_DIR": str(var), "DATABASE__PORT": str(free_port()),
                       "MQTT__PORT": str(free_port())}.items():  # fmt: skip
        monkeypatch.setenv(f"SAFEHOME_{key}", value)
    for key in ("CONFIG", "DATABASE__OWNER_USER", "DATABASE__PASSWORD", "BROKER__PASSWD_PATH"):
        monkeypatch.delenv(f"SAFEHOME_{key}", raising=False)
    settings, gateway_env = settings_with_local_secrets(None)
    b = settings.broker
    assert b.managed and b.pid_path == var / "mqtt" / "mosquitto.pid"
    assert (b.public_host, b.public_port, b.public_tls) == ("127.0.0.1", settings.mqtt.port, False)
    assert gateway_env["SAFEHOME_BROKER__ACL_PATH"] == str(var / "mqtt" / "acl")

    services = LocalServices(settings)
    services.up()
    try:
        with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
            creds = apply_site_definition(conn, SITE, rotate_passwords=True)
        (cred,) = creds
        port = settings.mqtt.port
        assert mqtt_login_code("127.0.0.1", port, cred.device_id, cred.password) != 0
        assert services.sync_broker() == 1  # the gateway's writer: lock, reload, confirmed
        assert mqtt_login_code("127.0.0.1", port, cred.device_id, cred.password) == 0
        assert mqtt_login_code("127.0.0.1", port, cred.device_id, "wrong") != 0
    finally:
        services.down()
