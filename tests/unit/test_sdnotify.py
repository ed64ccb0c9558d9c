"""The sd_notify sender against real AF_UNIX datagram sockets (a path and an abstract name)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sdnotify import SdNotifier, watchdog_loop


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_watchdog_stopping_reach_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SdNotifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("serving")
    assert _recv(sock) == "READY=1\nSTATUS=serving"
    assert n.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert _recv(sock) == "STOPPING=1\nSTATUS=stopping"


def test_abstract_namespace_socket() -> None:
    name = f"safehome-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert SdNotifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_outside_systemd_every_call_is_a_no_op() -> None:
    n = SdNotifier({})
    assert not n.enabled
    assert n.watchdog_s is None
    assert not n.ready()
    assert not SdNotifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_socket_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not n.watchdog()
    assert not n.watchdog()
    assert [r.message for r in caplog.records].count("sd_notify failed") == 1


def test_watchdog_interval_from_the_environment() -> None:
    pid = str(os.getpid())
    assert SdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}).watchdog_s == 30.0
    assert SdNotifier({"WATCHDOG_USEC": "2500000"}).watchdog_s == 2.5
    assert SdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert SdNotifier({"WATCHDOG_USEC": "0"}).watchdog_s is None
    assert SdNotifier({"WATCHDOG_USEC": "x"}).watchdog_s is None


async def test_watchdog_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000"})  # pings every 10 ms
    state: dict[str, int] = {"healthy": 1, "checks": 0}
    checked = asyncio.Event()

    def healthy() -> bool:
        state["checks"] += 1
        checked.set()
        return bool(state["healthy"])

    def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(sock.recv(64))
            except BlockingIOError:
                return out

    async def checks(k: int) -> None:
        target = state["checks"] + k
        async with asyncio.timeout(10):
            while state["checks"] < target:
                checked.clear()
                await checked.wait()

    task = asyncio.create_task(watchdog_loop(n, healthy))
    try:
        await checks(3)
        assert drain().count(b"WATCHDOG=1") >= 2
        state["healthy"] = 0
        await checks(1)  # the loop has seen the change; what it sent before is drained here
        drain()
        await checks(5)
        assert drain() == []  # no ping while unhealthy
        state["healthy"] = 1
        await checks(2)
        assert b"WATCHDOG=1" in drain()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
