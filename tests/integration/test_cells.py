"""Two cells on one machine (issue 15 §5, gateway.cells): one real broker, one real database,
two gateway runtimes with the same base MQTT client id and different ``[cell]`` settings,
cell A serving site A and cell B site B. A press at site A reaches, is stored and analysed by,
and raises its incident through cell A's gateway only; cell B's gateway never receives a
message of site A; neither gateway takes the other's MQTT session."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from devices import protocol as p
from gateway.brokersync import BrokerSync
from gateway.cells import CellSettings
from gateway.commissioning import DeviceCredential
from gateway.escalation.recovery import recover_once
from gateway.ingest import IngestPipeline, StoredMessage
from gateway.metrics import Metrics
from gateway.mqttsession import MqttSession
from gateway.notify.outbox import IncidentNotice, enqueue_incident
from gateway.settings import AnalysisSettings, Settings
from gateway.storage import visits as visits_store
from gateway.visits.config import load_visits_config
from gateway.visits.worker import VisitsSweeper
from gateway.workflow.service import IncidentService, Trigger
from gateway.workflow.transitions import IncidentType
from tests.support import (
    PREFIX,
    Broker,
    Database,
    DeviceClient,
    InProcessGateway,
    broker_env,
    gateway_settings,
    make_site,
    wait_until,
)

pytestmark = pytest.mark.integration


class Seen:
    """A runtime's extra sink: the (site, device, message id) of every batch it stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, batch: Sequence[StoredMessage]) -> None:
        with self._lock:
            self.items.extend(
                (m.device.site_id, m.device.device_id, m.message.envelope.msg_id) for m in batch
            )

    def sites(self) -> set[str]:
        with self._lock:
            return {site for site, _, _ in self.items}

    def ids(self) -> set[str]:
        with self._lock:
            return {mid for _, _, mid in self.items}


class Listener:
    """A real MQTT 5 client of a gateway account (client id = user name, as the broker binds
    them): the SUBACK / PUBACK reason codes it gets and the topics it receives."""

    def __init__(self, port: int, username: str, password: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.topics: list[str] = []
        self.subacks: dict[int, bool] = {}  # mid -> granted
        self.connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._lock:
            self.subacks[mid] = not any(rc.is_failure for rc in codes)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.topics.append(str(msg.topic))

    def __enter__(self) -> Listener:
        self._client.connect("127.0.0.1", self._port, keepalive=30)
        self._client.loop_start()
        assert self.connected.wait(5), "CONNACK refused or missing"
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def subscribe(self, topic: str) -> bool:
        """Subscribe (QoS 1); whether the broker granted it."""
        _, mid = self._client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self.subacks, 5, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish (QoS 1); whether the broker accepted it (PUBACK without a failure code)."""
        codes: list[bool] = []
        self._client.on_publish = lambda c, u, mid, rc, p: codes.append(not rc.is_failure)
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_until(lambda: bool(codes), 5, f"PUBACK for {topic}")
        return codes[0]

    def received(self) -> list[str]:
        with self._lock:
            return list(self.topics)


_CELLS = {"cell-a": "site-a", "cell-b": "site-b"}


def _shared_broker(db: Database, broker: Broker, **env: str) -> Settings:
    """Settings for gateways whose broker is shared by cells A and B (one site each), the
    broker's files written by the gateway's own writer (``safehome broker sync``): a gateway
    account per cell, limited to its site (gateway.brokersync, gateway.cells)."""
    listed = [{"id": cell, "sites": [site]} for cell, site in _CELLS.items()]
    env |= {**broker_env(broker), "SAFEHOME_BROKER__CELLS": orjson.dumps(listed).decode()}
    settings = gateway_settings(db, broker, **env)
    with db.connect() as conn, conn.transaction():
        BrokerSync(settings).apply(conn)
    return settings


def _press(broker: Broker, cred: DeviceCredential, msg_id: str) -> str:
    """Publish a press; return the application-level ack status (a gateway stored it)."""
    base = f"{PREFIX}/v1/{cred.site_id}/{cred.device_id}"
    with DeviceClient(broker.port, cred.device_id, cred.password) as dev:
        dev.subscribe(f"{base}/ack")
        payload = p.encode_event(cred.device_id, msg_id, 1, int(time.time() * 1000), event="press")
        assert dev.publish(f"{base}/event", payload) == "0"
        wait_until(lambda: bool(dev.acks), 10, "app-level ack")
        return str(orjson.loads(dev.acks[0])["status"])


def _received(gw: InProcessGateway) -> float:
    """MQTT messages this gateway's ingest received (every channel)."""
    registry = gw.runtime.metrics.registry
    return sum(
        registry.get_sample_value("safehome_ingest_messages_total", {"channel": ch}) or 0.0
        for ch in ("event", "telemetry", "state")
    )


def _incidents(db: Database, site: str) -> int:
    return int(
        db.scalar(
            "SELECT count(*) FROM incidents WHERE site_id = %s AND type = 'emergency_call'",
            (site,),
        )
    )


def _cell(settings: Settings, cell_id: str, *sites: str) -> Settings:
    """``settings`` as cell ``cell_id``'s gateway has them. On a broker shared by cells
    (``broker.cells``) it connects with its own account, ``<mqtt.username>-<cell>``: the
    broker binds a session to the user name (use_username_as_clientid)."""
    return settings.model_copy(update={"cell": CellSettings(id=cell_id, sites=sites)})


def test_two_cells_each_serve_only_their_own_sites(db: Database, broker: Broker) -> None:
    creds = make_site(db, broker, site_id="site-a", beds=1, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.site_id: c for c in creds if c.kind == "button"}
    assert set(button) == {"site-a", "site-b"}
    # One base client id for both: the cell id tells them apart (brokers that do not bind
    # sessions to user names, e.g. EMQX; Mosquitto here binds them to the accounts).
    # Each cell's gateway account on the shared broker, narrowed to its site.
    base = _shared_broker(db, broker)
    seen_a, seen_b = Seen(), Seen()
    with (
        InProcessGateway(_cell(base, "cell-a", "site-a"), sink=seen_a) as gw_a,
        InProcessGateway(_cell(base, "cell-b", "site-b"), sink=seen_b) as gw_b,
    ):
        id_a, id_b = gw_a.runtime.settings.mqtt.client_id, gw_b.runtime.settings.mqtt.client_id
        assert (id_a, id_b) == (f"{base.mqtt.client_id}-cell-a", f"{base.mqtt.client_id}-cell-b")
        users = gw_a.runtime.settings.mqtt.username, gw_b.runtime.settings.mqtt.username
        assert users == ("gateway-cell-a", "gateway-cell-b")

        assert _press(broker, button["site-a"], "press-a") == "stored"
        wait_until(lambda: _incidents(db, "site-a") == 1, 15, "site A's incident")
        wait_until(lambda: "press-a" in seen_a.ids(), 10, "cell A analysed the press")
        assert _received(gw_b) == 0 and seen_b.items == []

        # Cell B serves its own site. The broker took site A's press (and cell A acked it)
        # before this one was sent: had cell B subscribed to site A, it would have it first.
        assert _press(broker, button["site-b"], "press-b") == "stored"
        wait_until(lambda: _incidents(db, "site-b") == 1, 15, "site B's incident")
        wait_until(lambda: "press-b" in seen_b.ids(), 10, "cell B analysed the press")
        assert seen_a.sites() == {"site-a"} and seen_a.ids() == {"press-a"}
        assert seen_b.sites() == {"site-b"} and seen_b.ids() == {"press-b"}
        assert _received(gw_a) == 1 and _received(gw_b) == 1

        # Neither gateway took over the other's persistent session.
        for gw in (gw_a, gw_b):
            stats = gw.runtime.session.stats
            assert stats is not None
            assert (stats.connects, stats.connection_losses) == (1, 0)
            assert gw.runtime.session.connected.is_set()
    assert _incidents(db, "site-a") == 1 and _incidents(db, "site-b") == 1


def test_each_cells_broker_account_reads_and_writes_only_its_own_sites(
    db: Database, broker: Broker
) -> None:
    creds = make_site(db, broker, site_id="site-a", beds=1, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.site_id: c for c in creds if c.kind == "button"}
    _shared_broker(db, broker)
    pw = broker.gateway_password
    with (
        Listener(broker.port, "gateway-cell-a", pw) as cell_a,
        Listener(broker.port, "gateway-cell-b", pw) as cell_b,
        Listener(broker.port, "gateway", pw) as everything,  # today's account: unchanged
    ):
        # Each cell's gateway subscribes as today's gateway does (every site) and to the other
        # cell's site by name. Mosquitto 2.0 grants a SUBSCRIBE whatever its filter and checks
        # the read ACL on every message it would deliver: a cell receives only its own sites.
        for cell in (cell_a, cell_b, everything):
            for f in (p.subscription_filter(PREFIX), f"{PREFIX}/#"):
                cell.subscribe(f)
        for f in (*p.uplink_filters(PREFIX, "site-a"), *p.uplink_filters(PREFIX, "site-b")):
            cell_a.subscribe(f)
            cell_b.subscribe(f)

        for site in ("site-a", "site-b"):
            cred = button[site]
            with DeviceClient(broker.port, cred.device_id, cred.password) as dev:
                payload = p.encode_event(cred.device_id, f"press-{site}", 1,
                                         int(time.time() * 1000), event="press")  # fmt: skip
                assert dev.publish(p.format_topic(PREFIX, site, cred.device_id, "event"),
                                   payload) == "0"  # fmt: skip
        topic = {s: p.format_topic(PREFIX, s, button[s].device_id, "event") for s in button}
        # Today's account receives both presses, once per matching subscription (two).
        wait_until(lambda: len(everything.received()) == 4, 10, "both presses, all sites")
        assert set(everything.received()) == set(topic.values())
        # Site A's press matched three of cell A's subscriptions, and so did site B's; the
        # presses were taken before these reads, so anything of site B's would be here.
        wait_until(lambda: len(cell_a.received()) == 3, 10, "cell A: site A's press")
        wait_until(lambda: len(cell_b.received()) == 3, 10, "cell B: site B's press")
        assert set(cell_a.received()) == {topic["site-a"]}
        assert set(cell_b.received()) == {topic["site-b"]}

        # Writes: its own sites' acks and config only.
        ack = p.encode_ack("m1", "stored")
        assert cell_a.publish(p.ack_topic(PREFIX, "site-a", button["site-a"].device_id), ack)
        assert not cell_a.publish(p.ack_topic(PREFIX, "site-b", button["site-b"].device_id), ack)
        assert not cell_a.publish(topic["site-a"], b"{}")  # not a device's uplink


# -- two cells on one database: each cell's database-wide workers act on its own sites only --


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A real local HTTP endpoint (the family app's backend) recording every POST body."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield bodies, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join(5)


@contextmanager
def _ingest_only(settings: Settings) -> Iterator[None]:
    """A gateway's ingest without its analysis: what a gateway killed right after the ack,
    before analysing, leaves behind (stored, acked, a pending alarm marker)."""
    pipeline = IngestPipeline(
        settings.database, settings.ingest, settings.mqtt.prefix, Metrics(), None
    )
    session = MqttSession(settings.mqtt, pipeline.enqueue, [p.subscription_filter(PREFIX)])
    pipeline.attach(session)
    pipeline.start()
    session.start()
    try:
        wait_until(session.connected.is_set, 10, "ingest connected")
        yield
    finally:
        session.stop()
        pipeline.stop()


def _queue_notifications(db: Database, incident_id: int, resident_id: str) -> None:
    """The contacts' notifications of an incident queued in the outbox (as a contacts tier
    queues them)."""

    async def queue() -> None:
        async with await psycopg.AsyncConnection.connect(db.conninfo(), autocommit=True) as c:
            notice = IncidentNotice(incident_id, resident_id, "emergency_call", datetime.now(UTC))
            await enqueue_incident(c, notice)

    asyncio.run(queue())


def _marker(db: Database, msg_id: str) -> tuple[Any, ...]:
    rows = db.rows("SELECT handled_by, outcome FROM pending_alarms WHERE msg_id = %s", (msg_id,))
    assert len(rows) == 1
    return rows[0]


def test_a_cell_that_is_down_keeps_its_alarms_and_notifications_from_the_other_cell(
    db: Database, broker: Broker, webhook: tuple[list[dict[str, Any]], str], tmp_path: Path
) -> None:
    bodies, url = webhook
    creds = make_site(db, broker, site_id="site-a", beds=2, wearables=False)
    creds += make_site(db, broker, site_id="site-b", beds=1, wearables=False)
    button = {c.device_id: c for c in creds if c.kind == "button"}
    with db.connect() as conn:
        conn.execute("UPDATE residents SET consent_family_incidents = true")
        for resident in ("site-a-r0", "site-a-r1", "site-b-r0"):
            conn.execute(
                "INSERT INTO contacts (contact_id, resident_id, kind, display_name, channels)"
                " VALUES (%s, %s, 'family', 'F', '[\"webhook\"]')",
                (f"fam-{resident}", resident),
            )
    ladder = tmp_path / "escalation.toml"
    ladder.write_text(
        '[ladder]\n[[ladder.tiers]]\nname = "contacts"\naudience = "contacts"\ntimeout_s = 600\n'
    )
    settings = _shared_broker(
        db, broker,
        SAFEHOME_ESCALATION__LADDER_CONFIG=str(ladder),
        SAFEHOME_ESCALATION__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__POLL_INTERVAL_S="0.1",
        SAFEHOME_NOTIFY__WEBHOOKS__WEBHOOK__URL=url,
        SAFEHOME_ALARMS__RECOVERY_GRACE_S="0",
        SAFEHOME_ALARMS__RECOVERY_INTERVAL_S="0.2",
    )  # fmt: skip

    # Cell A's last moments, then it goes down: site A's first press became an incident whose
    # escalation timer and family notification are due; its second press was stored and
    # acked, never analysed. Cell B's gateway died the same way with a press of site B.
    with _ingest_only(settings):
        assert _press(broker, button["site-a-bt0"], "press-a0") == "stored"
        with db.connect() as conn:
            outcomes = recover_once(conn, older_than_s=0, analysis=AnalysisSettings(),
                                    limit=10, sites=("site-a",))  # fmt: skip
        assert outcomes == ["raised"]
        incident_a = int(db.scalar("SELECT id FROM incidents WHERE site_id = 'site-a'"))
        _queue_notifications(db, incident_a, "site-a-r0")
        assert _press(broker, button["site-a-bt1"], "press-a1") == "stored"
        assert _press(broker, button["site-b-bt0"], "press-b0") == "stored"
    assert _marker(db, "press-a1") == (None, None)
    assert _marker(db, "press-b0") == (None, None)
    timer = "SELECT * FROM incident_escalations WHERE incident_id = %s"
    timer_a = db.rows(timer, (incident_a,))
    assert len(timer_a) == 1
    due = "SELECT count(*) FROM incident_escalations WHERE incident_id = %s AND next_at <= now()"
    assert db.scalar(due, (incident_a,)) == 1
    steps = "SELECT count(*) FROM audit_log WHERE target = %s AND action LIKE 'escalation.%%'"
    queued = "SELECT state, attempts FROM notification_outbox WHERE incident_id = %s"
    assert db.rows(queued, (incident_a,)) == [("pending", 0)]

    # Cell B alone: its recovery raises site B's alarm, its escalation and outbox notify site
    # B's family. Site A's rows were due first (its marker, timer and outbox row are older):
    # had cell B's workers seen them, they would have taken them in the same passes.
    with InProcessGateway(_cell(settings, "cell-b", "site-b"), api=False):
        wait_until(lambda: any(b["contact_id"] == "fam-site-b-r0" for b in bodies), 20,
                   "site B's family notified by cell B")  # fmt: skip
        assert _marker(db, "press-b0")[0] == "recovery"
        assert _marker(db, "press-a1") == (None, None)  # still pending, for cell A
        assert db.rows(timer, (incident_a,)) == timer_a  # never escalated, not even looked at
        assert db.scalar(steps, (f"incident:{incident_a}",)) == 0
        assert db.rows(queued, (incident_a,)) == [("pending", 0)]  # never attempted
        assert [b["contact_id"] for b in bodies] == ["fam-site-b-r0"]
    assert db.scalar("SELECT count(*) FROM incidents WHERE site_id = 'site-a'") == 1

    # Cell A back: it takes all of its own (and nothing of site B's twice).
    with InProcessGateway(_cell(settings, "cell-a", "site-a"), api=False):
        wait_until(
            lambda: {"fam-site-a-r0", "fam-site-a-r1"} <= {b["contact_id"] for b in bodies},
            20, "site A's families notified by cell A",
        )  # fmt: skip
        assert _marker(db, "press-a1")[0] == "recovery"
    assert db.rows(queued, (incident_a,)) == [("delivered", 1)]
    assert sorted(b["contact_id"] for b in bodies) == [
        "fam-site-a-r0", "fam-site-a-r1", "fam-site-b-r0",
    ]  # fmt: skip


def test_a_cells_visits_sweep_notices_and_knocks_only_at_its_own_sites(
    db: Database, broker: Broker
) -> None:
    for site in ("site-a", "site-b"):
        make_site(db, broker, site_id=site, beds=1, wearables=False)
    with db.connect() as conn:
        # Both elders are overdue for a phone and a home visit, and both homes went silent.
        conn.execute("UPDATE residents SET created_at = now() - interval '40 days'")
        conn.execute("UPDATE locations SET kind = 'home'")
        service = IncidentService(conn)
        for dev, site in conn.execute("SELECT device_id, site_id FROM devices WHERE active"):
            service.raise_or_join(Trigger(IncidentType.DEVICE_OFFLINE, site, datetime.now(UTC),
                                          "offline", subject=dev))  # fmt: skip
        for resident in ("site-a-r0", "site-b-r0"):
            visits_store.set_risks(conn, resident, ["very_old"])
    notices = "SELECT resident_id, kind FROM visit_notices ORDER BY resident_id, kind"
    tasks = "SELECT resident_id, reason FROM door_knock_tasks ORDER BY resident_id"
    pool: ConnectionPool[Any] = ConnectionPool(db.conninfo(), min_size=1, max_size=2,
                                                kwargs={"autocommit": True}, open=True)  # fmt: skip
    try:
        cell_b = VisitsSweeper(pool, load_visits_config(), sites=("site-b",))
        assert asyncio.run(cell_b.run_once()) == 3  # phone, home, door knock
        assert db.rows(notices) == [("site-b-r0", "home"), ("site-b-r0", "phone")]
        assert db.rows(tasks) == [("site-b-r0", "home_silent")]
        assert asyncio.run(cell_b.run_once()) == 0
        everyone = VisitsSweeper(pool, load_visits_config())  # no cell: every site
        assert asyncio.run(everyone.run_once()) == 3
    finally:
        pool.close()
    assert [r[0] for r in db.rows(notices)] == ["site-a-r0"] * 2 + ["site-b-r0"] * 2
    assert db.rows(tasks) == [("site-a-r0", "home_silent"), ("site-b-r0", "home_silent")]
