"""The gateway MQTT client's socket: plain TCP or TLS, and the locking TLS needs.

Writes from any thread go through the client's one write lock and one ``sendall``. Plain TCP
is full-duplex, so reads take no lock. With TLS the SSL object must not be used by two threads
at once: the socket is then non-blocking and every SSL call takes a second, short lock here.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time

from devices.mqttcodec import reason_name

__all__ = ["ConnectionClosedError", "RefusedError", "Transport", "open_transport"]


class ConnectionClosedError(Exception):
    """The connection ended; ``str()`` says why (for the logs)."""


class RefusedError(Exception):
    """The broker refused the connection (CONNACK reason code 0x80 or more)."""

    def __init__(self, reason_code: int, reason_string: str | None) -> None:
        text = reason_name(reason_code) + (f": {reason_string}" if reason_string else "")
        super().__init__(text)
        self.reason_code = reason_code


class Transport:
    """The socket, and the locking TLS needs (an SSL object is not safe in two threads).

    Plain TCP: blocking socket; ``send`` is ``sendall`` (the caller holds the client's write
    lock); ``recv_into`` takes no lock. TLS: non-blocking socket, every SSL call under
    ``_io``; waits happen outside the lock with ``poll``.
    """

    def __init__(self, sock: socket.socket, tls: bool, send_timeout_s: float) -> None:
        self.sock = sock
        self.tls = tls
        self._io = threading.Lock()
        self._send_timeout_ms = int(send_timeout_s * 1000)
        self.opened = time.monotonic()
        if tls:
            sock.setblocking(False)
        else:
            sock.settimeout(None)

    def send(self, data: bytes) -> None:
        if not self.tls:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        waiter = select.poll()
        waiter.register(self.sock, select.POLLOUT | select.POLLIN)
        while view:
            with self._io:
                try:
                    n = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    n = 0
            if n:
                view = view[n:]
            elif not waiter.poll(self._send_timeout_ms):
                raise TimeoutError("TLS send made no progress")

    def pending(self) -> bool:
        """Decrypted bytes already inside the SSL object (``poll`` cannot see them)."""
        if not self.tls:
            return False
        assert isinstance(self.sock, ssl.SSLSocket)
        with self._io:
            return self.sock.pending() > 0

    def recv_into(self, view: memoryview) -> int | None:
        """Bytes read (0 = closed), or None when TLS needs more raw bytes for a record."""
        if not self.tls:
            return self.sock.recv_into(view)
        with self._io:
            try:
                return self.sock.recv_into(view)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None

    def shutdown(self, how: int) -> None:
        """Shut down without the I/O lock: this is how a blocked writer is woken up."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(how)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def open_transport(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    timeout_s: float,
    send_timeout_s: float,
) -> Transport:
    """Connect (TCP_NODELAY, TLS when ``ssl_context``) within ``timeout_s``."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        return Transport(sock, ssl_context is not None, send_timeout_s)
    except BaseException:
        sock.close()
        raise
