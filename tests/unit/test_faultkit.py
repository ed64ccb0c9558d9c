"""The fault matrix's own tools: the partitioning TCP proxy and the generated gateway config.

The proxy is what the partition faults stand on, so it is checked against a real echo
server on 127.0.0.1: bytes pass, a blackhole holds them (nobody is told), healing delivers
them in order, a cut resets the connection and new connections work again.
"""

from __future__ import annotations

import socket
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import load_settings
from tests.faultkit.proxy import ProxyMode, TcpProxy
from tests.faultkit.stack import base_config, ladder, ladder_text, merge, toml_text


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            while data := _recv(conn):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    stop.set()
    server.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(4096)
    except OSError:
        return b""


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_proxy_forwards_holds_during_a_blackhole_and_delivers_after(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as c:
        c.settimeout(2)
        c.sendall(b"ping")
        assert _read(c, 4) == b"ping"
        proxy.blackhole()
        assert proxy.mode is ProxyMode.BLACKHOLE
        c.sendall(b"held")
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.recv(4)  # nothing comes back, and the connection is not closed either
        proxy.heal()
        c.settimeout(2)
        assert _read(c, 4) == b"held"


def test_proxy_blackholes_new_connections_until_healed(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy:
        proxy.blackhole()
        with socket.create_connection(("127.0.0.1", proxy.port)) as c:
            c.sendall(b"early")
            c.settimeout(0.5)
            with pytest.raises(TimeoutError):
                c.recv(5)
            proxy.heal()
            c.settimeout(2)
            assert _read(c, 5) == b"early"


def test_proxy_cut_resets_connections_and_accepts_new_ones(echo_port: int) -> None:
    with TcpProxy(echo_port) as proxy:
        c = socket.create_connection(("127.0.0.1", proxy.port))
        c.settimeout(2)
        c.sendall(b"a")
        assert _read(c, 1) == b"a"
        proxy.cut()
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            c.sendall(b"b")
            c.recv(1)
        c.close()
        with socket.create_connection(("127.0.0.1", proxy.port)) as again:
            again.settimeout(2)
            again.sendall(b"c")
            assert _read(again, 1) == b"c"
        assert proxy.accepted == 2


def test_generated_config_is_valid_toml_and_valid_settings(tmp_path: Path) -> None:
    cfg = merge(base_config(tmp_path), {"database": {"port": 6543}})
    text = toml_text(cfg)
    assert tomllib.loads(text) == cfg
    (tmp_path / "ladder.toml").write_text(ladder_text(ladder([{"name": "duty_staff",
                                                               "audience": "duty_staff",
                                                               "timeout_s": 5.0}])))  # fmt: skip
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    env = {f"SAFEHOME_NOTIFY__WEBHOOKS__{name}__URL": "http://127.0.0.1:9/x"
           for name in ("WEBHOOK:FAMILY", "WEBHOOK:FAMILY2", "WEBHOOK:PAGER")}  # fmt: skip
    settings = load_settings(path, environ=env)
    assert settings.analysis.catch_up_s == 2.0
    assert settings.database.port == 6543
    assert settings.notify.webhooks["webhook:pager"].timeout_s == 1.0
