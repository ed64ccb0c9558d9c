"""systemd's service notification protocol (``sd_notify``): one datagram per state change.

Under a ``Type=notify`` unit systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or an
abstract socket written ``@name``) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` and
``$WATCHDOG_PID``. The gateway sends ``READY=1`` when it serves, ``WATCHDOG=1`` while its
workers are healthy (gateway.runtime) and ``STOPPING=1`` when shutdown begins. Outside
systemd (no ``$NOTIFY_SOCKET``) every call does nothing.

Our own ~60 lines rather than a dependency: PyPI's ``sdnotify`` has had no release since
2017 and swallows every error; ``systemd-python``/``cysystemd`` need libsystemd headers and
a compiler for one ``sendto``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (a no-op when it is unset).

    A send that fails is logged once and otherwise ignored: a missing supervisor must
    never stop the gateway (systemd then restarts it for a missed watchdog, as it should).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if raw.startswith("@"):
            self.address = b"\0" + raw[1:].encode()  # Linux abstract namespace
        elif raw.startswith("/"):
            self.address = raw
        self.watchdog_s = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was sent."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(data)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed", extra={"error": str(exc)})
            return False
        if self._warned:
            self._warned = False
            log.info("sd_notify works again")
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


async def watchdog_loop(notifier: SdNotifier, healthy: Callable[[], bool]) -> None:
    """Ping the watchdog three times per period, only while ``healthy()``: a stuck event loop
    or an unhealthy worker stops the pings, and systemd restarts the process. Logs each
    change between healthy and unhealthy once. Runs until cancelled."""
    assert notifier.watchdog_s is not None
    period = notifier.watchdog_s / 3
    unhealthy = False
    while True:
        if healthy():
            notifier.watchdog()
            if unhealthy:
                unhealthy = False
                log.info("workers healthy again; watchdog pings resumed")
        elif not unhealthy:
            unhealthy = True
            log.error("a worker is unhealthy; watchdog pings withheld")
        await asyncio.sleep(period)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """The watchdog period systemd expects for this process, in seconds, or None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1_000_000
