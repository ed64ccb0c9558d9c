"""The gateway MQTT client's connection timers, with no I/O: CONNACK timeout, keepalive pings,
the dead-connection rule and the drain after DISCONNECT.

The broker's Server Keep Alive wins when it sends one. PINGREQ goes out once half the keepalive
has passed without a packet sent, or without one received; no packet at all from the broker
for 1.5 keepalives (the broker's own rule for us) means a dead connection. While reading is
paused by the byte budget the broker's replies wait unread, so that rule is suspended and
restarts on resume. :class:`gateway.mqttclient.MqttClient` owns the clock and the socket: it
reports what happened and writes the PINGREQ these timers ask for.
"""

from __future__ import annotations

from gateway.mqtttransport import ConnectionClosedError

__all__ = ["Timers"]

STOP_DRAIN_S = 2.0  # after DISCONNECT, how long to wait for the broker to close


class Timers:
    """One connection's timers (network thread only; ``last_sent`` is written under the
    client's write lock by whichever thread wrote)."""

    def __init__(self, keepalive_s: float, connect_timeout_s: float) -> None:
        self.keepalive = keepalive_s
        self._connect_timeout = connect_timeout_s
        self.last_recv = 0.0
        self.last_sent = 0.0
        self.ping_sent: float | None = None
        self._stop_deadline = 0.0

    def opened(self, now: float) -> None:
        """A new connection."""
        self.last_recv = self.last_sent = now
        self.ping_sent = None
        self._stop_deadline = 0.0

    def resumed(self, now: float) -> None:
        """Reading resumed after a pause: the broker's replies were waiting unread."""
        self.last_recv = now
        self.ping_sent = None

    def ping_due_paused(self, now: float) -> bool:
        """While paused: a PINGREQ every half keepalive, so the broker hears from us."""
        half = self.keepalive / 2 if self.keepalive else 0.0
        return bool(half) and now - self.last_sent >= half

    def check(self, now: float, *, opened: float, accepted: bool, stopping: bool) -> bool:
        """True when a PINGREQ is due; raises :class:`ConnectionClosedError` when the
        connection is to end (no CONNACK in time, a silent broker, the stop drain is over)."""
        if stopping:
            if not self._stop_deadline:
                self._stop_deadline = now + STOP_DRAIN_S
            elif now > self._stop_deadline:
                raise ConnectionClosedError("stopped")
            return False
        if not accepted:
            if now - opened > self._connect_timeout:
                raise ConnectionClosedError("no CONNACK from the broker")
            return False
        keepalive = self.keepalive
        if not keepalive:
            return False
        if now - self.last_recv > 1.5 * keepalive:
            raise ConnectionClosedError(
                f"nothing from the broker for {now - self.last_recv:.1f}s (keepalive)"
            )
        half = keepalive / 2
        return self.ping_sent is None and (
            now - self.last_sent >= half or now - self.last_recv >= half
        )
