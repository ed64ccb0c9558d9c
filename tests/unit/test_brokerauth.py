"""Broker credentials and ACL files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.brokerauth import (
    BrokerAuthError,
    DeviceAccount,
    ServiceAccount,
    hash_password,
    render_acl,
    verify_password,
    write_auth_files,
)


def test_hash_verifies_and_is_salted() -> None:
    h1, h2 = hash_password("pw"), hash_password("pw")
    assert h1 != h2 and h1.startswith("$7$101$")
    assert verify_password("pw", h1) and not verify_password("other", h1)


def test_mosquitto_hashes_are_understood(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    assert tool is not None, "mosquitto_passwd (Debian mosquitto) is required"
    path = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(path), "dev-1", "secret"], check=True)
    stored = path.read_text().strip().split(":", 1)[1]
    assert verify_password("secret", stored)


def test_acl_confines_each_device_to_its_own_topics() -> None:
    acl = render_acl(
        "shg",
        ServiceAccount("gateway", "h"),
        [DeviceAccount("bt-1", "site-a", "h"), DeviceAccount("bs-2", "site-b", "h")],
    )
    assert "user bt-1\ntopic write shg/v1/site-a/bt-1/event" in acl
    assert "topic read shg/v1/site-b/bs-2/ack" in acl
    assert "pattern" not in acl  # no wildcard rules that could cover another device


def test_ids_that_could_escape_a_topic_level_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerAuthError):
        write_auth_files(
            tmp_path, "shg", ServiceAccount("gw", "h"), [DeviceAccount("a/#", "s", "h")]
        )
    assert not (tmp_path / "acl").exists()


def test_a_device_cannot_take_a_service_accounts_name(tmp_path: Path) -> None:
    # Its client id would be the gateway's (the broker binds client id to user name).
    for name in ("gateway", "monitor"):
        with pytest.raises(BrokerAuthError, match="reserved"):
            write_auth_files(
                tmp_path, "shg", ServiceAccount("gateway", "h"),
                [DeviceAccount(name, "s", "h")], extra=[ServiceAccount("monitor", "h")],
            )  # fmt: skip


def test_acl_lines_come_from_the_protocols_channels() -> None:
    acl = render_acl("shg", ServiceAccount("gateway", "h"), [DeviceAccount("d", "s", "h")])
    block = acl.split("user d\n", 1)[1].strip().splitlines()
    assert block == [
        "topic write shg/v1/s/d/event",
        "topic write shg/v1/s/d/telemetry",
        "topic write shg/v1/s/d/state",
        "topic read shg/v1/s/d/ack",
        "topic read shg/v1/s/d/config",
    ]
