"""A TCP proxy that can partition a link: the fault matrix puts one between the gateway and
the broker and one between the gateway and PostgreSQL.

Modes (switch at any time, from any thread):

* ``forward`` — bytes flow both ways (the normal state);
* :meth:`TcpProxy.blackhole` — a network partition: established connections stay open but
  nothing is forwarded (bytes are held, as TCP would keep retransmitting them), new
  connections are accepted but never reach the server. Neither side is told anything; they
  find out only through their own timeouts and keepalives.
* :meth:`TcpProxy.cut` — every established connection is reset (RST) at once; new
  connections are accepted and forwarded (a dropped connection, e.g. a NAT timeout);
* :meth:`TcpProxy.heal` — back to ``forward``. Connections held during a blackhole resume
  with their bytes in order, unless one side gave up (closed) meanwhile: then the other side
  is closed too, as a real peer would eventually learn.

Modelled on psycopg's ``tests/fix_proxy.py`` (which runs ``pproxy`` and stops/starts it, plus
a "deaf" listener that never accepts), with the blackhole made explicit and in-process. One
selector thread serves every connection.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

__all__ = ["ProxyMode", "TcpProxy"]

_CHUNK = 65536


class ProxyMode(Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    server: socket.socket | None
    # bytes read but not yet written, per direction (to the server / to the client)
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    closed: bool = False


class TcpProxy:
    """Listen on ``127.0.0.1:<port>`` and forward to ``target_host:target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = int(self._listener.getsockname()[1])
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._mode = ProxyMode.FORWARD
        self._cuts: list[threading.Event] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.port}", daemon=True)
        self.accepted = 0  # connections accepted since start (a test can wait for reconnects)

    # -- control ---------------------------------------------------------------------------

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def blackhole(self) -> None:
        """Partition: hold every byte, tell nobody."""
        self._mode = ProxyMode.BLACKHOLE
        self._wake()

    def heal(self) -> None:
        """End a partition: forward again (held bytes first)."""
        self._mode = ProxyMode.FORWARD
        self._wake()

    def cut(self) -> None:
        """Reset every established connection (RST to both sides); returns once done."""
        done = threading.Event()
        with self._lock:
            self._cuts.append(done)
        self._wake()
        if not done.wait(5):
            raise RuntimeError("proxy loop did not cut the connections")

    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair, reset=False)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the selector loop -----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                cuts, self._cuts = self._cuts, []
                pairs = list(self._pairs) if cuts else []
            for pair in pairs:
                self._close(pair, reset=True)
            for done in cuts:
                done.set()
            self._rearm()
            for key, _events in self._sel.select(timeout=0.5):
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif key.data is None:
                    self._accept()
                else:
                    pair, sock = key.data
                    self._io(pair, sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server: socket.socket | None = None
        if self._mode is ProxyMode.FORWARD:
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # the server is down: the client sees the connection end
                return
            server.setblocking(False)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server)
        with self._lock:
            self._pairs.add(pair)
            self.accepted += 1

    def _rearm(self) -> None:
        """(Re)register every socket for what it may do in the current mode."""
        with self._lock:
            pairs = list(self._pairs)
        forward = self._mode is ProxyMode.FORWARD
        for pair in pairs:
            if pair.closed:
                continue
            if pair.server is None and forward:
                try:
                    pair.server = socket.create_connection(self.target, timeout=2)
                except OSError:
                    self._close(pair, reset=False)
                    continue
                pair.server.setblocking(False)
            for sock, outbound, inbound in (
                (pair.client, pair.to_client, pair.to_server),
                (pair.server, pair.to_server, pair.to_client),
            ):
                if sock is None:
                    continue
                mask = 0
                if forward:
                    if len(inbound) < 4 * _CHUNK:
                        mask |= selectors.EVENT_READ
                    if outbound:
                        mask |= selectors.EVENT_WRITE
                try:
                    if mask:
                        try:
                            self._sel.modify(sock, mask, (pair, sock))
                        except KeyError:
                            self._sel.register(sock, mask, (pair, sock))
                    else:
                        with contextlib.suppress(KeyError):
                            self._sel.unregister(sock)
                except (ValueError, OSError):
                    self._close(pair, reset=False)
                    break

    def _io(self, pair: _Pair, sock: socket.socket) -> None:
        if pair.closed or self._mode is not ProxyMode.FORWARD or pair.server is None:
            return
        to_peer = pair.to_server if sock is pair.client else pair.to_client
        from_peer = pair.to_client if sock is pair.client else pair.to_server
        try:
            if len(to_peer) < 4 * _CHUNK:
                try:
                    data = sock.recv(_CHUNK)
                except BlockingIOError:
                    data = None
                if data == b"":
                    self._close(pair, reset=False)
                    return
                if data:
                    to_peer.extend(data)
            if from_peer:
                try:
                    sent = sock.send(from_peer)
                    del from_peer[:sent]
                except BlockingIOError:
                    pass
            peer = pair.server if sock is pair.client else pair.client
            if to_peer:
                try:
                    sent = peer.send(to_peer)
                    del to_peer[:sent]
                except BlockingIOError:
                    pass
        except OSError:
            self._close(pair, reset=True)

    def _close(self, pair: _Pair, *, reset: bool) -> None:
        with self._lock:
            if pair.closed:
                return
            pair.closed = True
            self._pairs.discard(pair)
        for sock in (pair.client, pair.server):
            if sock is None:
                continue
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(sock)
            if reset:  # SO_LINGER 0: close sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
