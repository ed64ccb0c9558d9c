"""The broker's own counters (Mosquitto's ``$SYS`` topics), exported by the gateway.

Prometheus cannot read ``$SYS`` itself; the gateway's monitor account may: user
``<mqtt.username>-sys`` with the gateway's password and ``topic read $SYS/#`` only, written by
gateway.brokerauth (the broker binds client ids to user names, so a connection under the
gateway's own account would take over the gateway's persistent session). That second, tiny
MQTT connection (client id ``<mqtt.client_id>-sys``, QoS 0, no persistent session) keeps the
latest value of each topic below; ``/metrics`` exports them as they are (Mosquitto
publishes them every ``sys_interval``, 10 s by default, retained). Kept apart from the
ingest session so that ``$SYS`` never reaches the ingest pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from devices.mqttcodec import SUB_RETAIN_IF_NEW
from gateway.brokerauth import SYS_MONITOR_SUFFIX
from gateway.mqttclient import MqttClient, Received
from gateway.mqttsession import _ssl_context
from gateway.settings import MqttSettings

log = logging.getLogger(__name__)

# $SYS topic → (metric name, help, counter?). Counters are cumulative since the broker started.
SYS_TOPICS: dict[str, tuple[str, str, bool]] = {
    "$SYS/broker/publish/messages/dropped": (
        "safehome_broker_publish_messages_dropped",
        "Messages the broker dropped (queue full or client offline too long), since it started",
        True,
    ),
    "$SYS/broker/messages/received": (
        "safehome_broker_messages_received", "Messages the broker received, since it started",
        True,
    ),
    "$SYS/broker/messages/sent": (
        "safehome_broker_messages_sent", "Messages the broker sent, since it started", True,
    ),
    "$SYS/broker/clients/connected": (
        "safehome_broker_clients_connected", "Clients connected to the broker", False,
    ),
    "$SYS/broker/store/messages/count": (
        "safehome_broker_stored_messages", "Messages held in the broker's store", False,
    ),
}  # fmt: skip


class BrokerSysMonitor(Collector):
    """Subscribes to :data:`SYS_TOPICS` and exports their latest values."""

    def __init__(self, settings: MqttSettings, client_id: str | None = None) -> None:
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        self._bad_logged = False
        password = settings.password.get_secret_value() if settings.password else None
        self._client = MqttClient(
            settings.host,
            settings.port,
            client_id or f"{settings.client_id}-sys",
            self._on_message,
            list(SYS_TOPICS),
            # Its own account (gateway.brokerauth.SYS_MONITOR_SUFFIX): the broker binds client
            # ids to user names, so the gateway's account would take over its session.
            username=settings.username + SYS_MONITOR_SUFFIX,
            password=password,
            keepalive_s=settings.keepalive_s,
            session_expiry_s=0,
            subscription_options=SUB_RETAIN_IF_NEW,  # QoS 0: nothing to acknowledge
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
            ssl_context=_ssl_context(settings),  # TLS like the ingest session
        )

    def start(self) -> None:
        self._client.start()

    def stop(self) -> None:
        self._client.stop()

    @property
    def values(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def _on_message(self, rec: Received) -> None:
        try:
            value = float(rec.payload.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            if not self._bad_logged:
                self._bad_logged = True
                log.warning("unexpected $SYS payload", extra={"topic": rec.topic})
            return
        with self._lock:
            self._values[rec.topic] = value

    def collect(self) -> Iterator[Metric]:
        values = self.values
        for topic, (name, doc, counter) in SYS_TOPICS.items():
            if topic not in values:
                continue  # not published yet (or not by this broker): no made-up zero
            family = CounterMetricFamily(name, doc) if counter else GaugeMetricFamily(name, doc)
            family.add_metric([], values[topic])
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())
