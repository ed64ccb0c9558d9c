"""The gateway process: one async context manager that owns every long-lived part.

Start-up, in order: database reachable and schema current → TimescaleDB edition detected and
its policies applied (or the gateway's own retention scheduled) → analysis runner (state
rebuilt from the stored streams, worker thread started) → ingest writer (its sink is the
runner's bounded queue) → MQTT session → HTTP API. Shutdown runs in reverse, each step with a
timeout: no new messages, ingest finishes its batch and hands it over, the runner analyses
what is queued and writes its detections. A worker that fails fails the process (the
supervisor, e.g. systemd, restarts it); bad input never does.

With ``failover.enabled`` (gateway.lease) the HTTP API starts right after the database check
and everything from the alarm recovery to the MQTT session starts only once this process holds
the lease: at once, or later as the standby taking over. So do the TimescaleDB policies and the
periodic work outside the alarm path (visits sweep, message outbox, away-period release): the
standby serves the API and waits, it writes or sends nothing on its own. A lost lease ends the
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, Self

import psycopg
import uvicorn
from prometheus_client import Gauge
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gateway import audit_anchor
from gateway.analysis import AnalysisRunner, PostgresStore
from gateway.api.app import build_app
from gateway.api.auth import AuthError, check_jwt_secret
from gateway.audit import VerifyResult
from gateway.audit_anchor import AnchorError
from gateway.brokerstats import BrokerSysMonitor
from gateway.carepath_metrics import CarePathCollector
from gateway.cell_coverage import CoverageWatch
from gateway.cells import apply_cell, served_sites, subscription_filters
from gateway.cellstore import scoped
from gateway.escalation import intake
from gateway.escalation.ladder import EscalationConfig, EscalationConfigError, load_ladders
from gateway.escalation.recovery import AlarmRecovery
from gateway.escalation.worker import EscalationWorker
from gateway.family.worker import AwayReleaser
from gateway.ingest import IngestPipeline, Sink, StoredMessage
from gateway.lease import Lease, instance_name
from gateway.metrics import ClientStatsCollector, Metrics
from gateway.mqttsession import MqttSession
from gateway.notify.channels import Notifier, NotifyError, build_notifiers
from gateway.notify.outbox import OutboxWorker
from gateway.paging.tokens import link_builder
from gateway.platform.workers import start_message_workers
from gateway.ratelimit import DeviceRateLimiter
from gateway.sdnotify import SdNotifier, watchdog_loop
from gateway.settings import Settings
from gateway.storage import pending_alarms, timescale
from gateway.storage.migrate import check_schema
from gateway.storage.probe import database_answers
from gateway.visits.config import DEFAULT_PATH as DEFAULT_VISITS_CONFIG
from gateway.visits.config import load_visits_config
from gateway.visits.worker import VisitsSweeper

log = logging.getLogger(__name__)


class GatewayError(RuntimeError):
    """The gateway cannot start or has lost a component it cannot run without."""


def wait_for_database(settings: Settings, timeout_s: float | None = None) -> None:
    """Block until the database answers; log the wait once."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    warned = False
    delay = settings.database.retry_min_s
    while True:
        try:
            database_answers(settings.database.conninfo())
            if warned:
                log.warning("database available")
            return
        except psycopg.OperationalError as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise GatewayError(f"database unreachable: {exc}") from exc
            if not warned:
                log.error("database unavailable at start-up; waiting", extra={"error": str(exc)})
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, settings.database.retry_max_s)


class Runtime:
    """The running gateway. ``sink`` is an extra consumer of stored batches (after analysis;
    called from either ingest writer thread)."""

    def __init__(
        self,
        settings: Settings,
        *,
        api: bool = True,
        sink: Sink | None = None,
        notifier: SdNotifier | None = None,
    ) -> None:
        settings = apply_cell(settings)  # a cell's client id, filters, lock (gateway.cells)
        if settings.failover.enabled:
            # Every connection of this process carries its own instance name: a standby that
            # takes over from a frozen holder ends the holder's sessions by it (gateway.lease).
            db = settings.database
            named = db.model_copy(update={"application_name": instance_name(db.application_name)})
            settings = settings.model_copy(update={"database": named})
        self.settings = settings
        self.lease: Lease | None = None
        if settings.failover.enabled:
            self.lease = Lease(
                settings.failover, settings.database.conninfo(),
                settings.database.application_name,
            )  # fmt: skip
        self.metrics = Metrics()
        self.failover_active = Gauge(
            "safehome_failover_active",
            "1 while this process is the active gateway (holds the failover lease, or runs "
            "without failover), 0 while it is the standby",
            registry=self.metrics.registry,
        )
        # systemd's notify socket (READY/WATCHDOG/STOPPING); a no-op outside systemd.
        self.sd = notifier if notifier is not None else SdNotifier()
        self.tsinfo: timescale.TimescaleInfo | None = None
        self._owns_schema = False
        self._api_enabled = api
        self._sink = sink
        self._tasks: list[asyncio.Task[None]] = []
        # What start-up opened, closed in reverse on shutdown or when start-up fails part-way.
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self.analysis: AnalysisRunner | None = None
        self.ingest: IngestPipeline | None = None
        self.session: MqttSession | None = None
        self.api_port: int | None = None
        # The API's database pool (sync, autocommit): opened before the API, closed after it.
        self.api_pool: ConnectionPool[Any] | None = None
        # Workflow workers and their async pool (see _start_workflow).
        self.workflow_pool: AsyncConnectionPool[Any] | None = None
        self.escalation: EscalationWorker | None = None
        self.outbox: OutboxWorker | None = None
        self.recovery: AlarmRecovery | None = None
        self.broker_sys: BrokerSysMonitor | None = None

    async def __aenter__(self) -> Self:
        s = self.settings
        if self._api_enabled:
            try:
                check_jwt_secret(s.api)  # refuse before anything starts
            except AuthError as exc:
                raise GatewayError(str(exc)) from None
        workflow = self._load_workflow()  # refuse a bad ladder or channel before starting
        await asyncio.to_thread(wait_for_database, s)
        self.tsinfo = await asyncio.to_thread(self._prepare_database)
        log.info(
            "storage ready",
            extra={"timescaledb": self.tsinfo.edition.value, "version": self.tsinfo.version},
        )
        try:
            if self.lease is None:
                await self._start_active(workflow)
                if self._api_enabled:
                    await self._start_api()
                await self._start_periodic()
            else:
                # Last to run: nothing of ours writes or acks any more (released even if it
                # was never held).
                self._stack.push_async_callback(asyncio.to_thread, self.lease.release)
                # Failover (gateway.lease): the API serves on both; everything that acts on
                # alarms, the MQTT session first of all, starts only with the lease.
                if self._api_enabled:
                    await self._start_api()
                if await self._try_lease():
                    await self._start_active(workflow)
                    await self._start_periodic()
                else:
                    log.info("standby: waiting for the lease")
                    self._spawn(self._standby(workflow), "standby")
            if self.sd.watchdog_s is not None:
                self._spawn(watchdog_loop(self.sd, self.healthy), "sd-watchdog")
        except BaseException:
            log.error("start-up failed; closing what was opened")
            await self.__aexit__(None, None, None)
            raise
        self.failover_active.set(0 if self.standby else 1)
        self.sd.ready("standby" if self.standby else "serving")
        return self

    @property
    def standby(self) -> bool:
        """Whether this process is the standby of a failover pair (waiting for the lease)."""
        return self.lease is not None and self.session is None

    async def _try_lease(self) -> bool:
        """One attempt at the lease; on success its guard starts (it fences the process)."""
        assert self.lease is not None
        if not await asyncio.to_thread(self.lease.acquire_once):
            return False
        self.lease.start_guard()
        return True

    async def _standby(self, workflow: tuple[EscalationConfig | None, dict[str, Notifier]]) -> None:
        """Wait for the lease (database outages are waited out), then become active."""
        assert self.lease is not None
        down = False
        while True:
            try:  # each attempt waits for the lock up to failover.check_interval_s
                if await self._try_lease():
                    break
                down = False
                self.metrics.db_up.set(1)  # no writer here to say so (alert SafehomeDatabaseDown)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.metrics.db_up.set(0)
                await asyncio.sleep(self.settings.failover.check_interval_s)
                if not down:
                    down = True
                    extra = {"error": type(exc).__name__}
                    log.warning("standby: database unavailable", extra=extra)
        log.info("standby: taking over")
        await self._start_active(workflow)
        await self._start_periodic()
        self.failover_active.set(1)
        self.sd.status("serving")

    async def _start_active(
        self, workflow: tuple[EscalationConfig | None, dict[str, Notifier]]
    ) -> None:
        """Everything that acts on alarms: recovery, analysis, workflow, ingest, MQTT."""
        s = self.settings
        assert self.tsinfo is not None
        if self._owns_schema:  # the schema's owner (warned about): our policies, as the active
            info = self.tsinfo
            await asyncio.to_thread(self._apply_policies, info)
        # Alarms stored but never analysed by the previous run (killed after the ack, down
        # longer than analysis.catch_up_s): their incidents first (escalation.recovery).
        self.recovery = AlarmRecovery(
            s.database.conninfo(), s.alarms, s.analysis, registry=self.metrics.registry,
            sites=served_sites(s.cell),  # a cell: its own sites' alarms only (gateway.cells)
        )  # fmt: skip
        self._stack.callback(self.recovery.close)
        try:
            await asyncio.to_thread(self.recovery.startup)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # The periodic pass takes them once the database answers again.
            log.warning("alarm recovery at start-up failed", extra={"error": type(exc).__name__})
        # Stored detections become incidents in the storing transaction (escalation.intake).
        store = PostgresStore(
            s.database, on_stored=intake.on_detections_stored, on_cancel=intake.on_resident_cancel
        )
        # The workflow workers start first so that they stop after analysis (shutdown
        # unwinds in reverse): the detections analysis stores last still become incidents.
        await self._start_workflow(*workflow)
        visits_cfg = load_visits_config(s.visits.config_path or DEFAULT_VISITS_CONFIG)
        self.analysis = AnalysisRunner(
            s.analysis, scoped(store, s.cell),  # a cell: its own sites only (gateway.cellstore)
            metrics_registry=self.metrics.registry, on_cancel=store.cancel,
            sensitivity=visits_cfg.sensitivity,  # risk categories -> inactivity thresholds
            kit=s.kit,  # "door not opened for days"
        )  # fmt: skip
        await asyncio.to_thread(self.analysis.start)
        self._stack.push_async_callback(asyncio.to_thread, self.analysis.stop)
        self.ingest = IngestPipeline(
            s.database, s.ingest, s.mqtt.prefix, self.metrics, self._deliver,
            event_sink=self._deliver_urgent,
            may_write=self.lease.valid if self.lease is not None else None,
            limiter=DeviceRateLimiter(
                s.ingest.rate_limit_per_s, s.ingest.rate_limit_burst,
                s.ingest.rate_limit_bytes_per_s, s.ingest.rate_limit_burst_bytes,
            ),
        )  # fmt: skip
        self.session = MqttSession(
            s.mqtt,
            self.ingest.enqueue,
            subscription_filters(s.cell, s.mqtt.prefix),
            max_packet_size=s.mqtt_packet_limit,
            # Failover: every (re)connection only with the lease confirmed (gateway.lease).
            may_connect=self.lease.confirm if self.lease is not None else None,
        )
        self.ingest.attach(self.session)
        self.ingest.start()
        # Unwound in reverse: the session stops taking messages first, then the writer
        # finishes (stores and acks) its batch.
        self._stack.push_async_callback(asyncio.to_thread, self.ingest.stop)
        self.session.start()
        self._stack.push_async_callback(asyncio.to_thread, self.session.stop)
        session = self.session
        self.metrics.registry.register(ClientStatsCollector(lambda: session.stats))
        if s.metrics.broker_sys:
            self.broker_sys = BrokerSysMonitor(s.mqtt)
            self.metrics.registry.register(self.broker_sys)
            self.broker_sys.start()
            self._stack.push_async_callback(asyncio.to_thread, self.broker_sys.stop)
        self._spawn(self._watch(), "watchdog")
        self._spawn(self._recovery_loop(), "alarm-recovery")
        coverage = CoverageWatch(s.database, s.cell, self.metrics.registry)
        if s.cell.enabled:  # every site with devices served by exactly one live cell
            self._spawn(coverage.run(), "cell-coverage")
        # Community: the time series by the database's own jobs; the alarm markers by us.
        self._spawn(self._retention_loop(), "retention")
        if s.audit.anchor_key is not None:
            self._spawn(self._anchor_loop(), "audit-anchor")

    def _load_workflow(self) -> tuple[EscalationConfig | None, dict[str, Notifier]]:
        """The escalation ladders and notification channels, validated (or GatewayError)."""
        s = self.settings
        try:
            ladders = load_ladders(s.escalation.ladder_path()) if s.escalation.enabled else None
            notifiers = build_notifiers(s.notify) if s.notify.enabled else {}
        except (EscalationConfigError, NotifyError) as exc:
            raise GatewayError(str(exc)) from None
        return ladders, notifiers

    async def _start_workflow(
        self, ladders: EscalationConfig | None, notifiers: dict[str, Notifier]
    ) -> None:
        """Start the notification outbox and escalation workers (tasks on their own pool).

        A worker that dies ends :meth:`run` (the process fails); database outages are
        retried inside the workers. They stop after ingest and analysis, before the pool.
        """
        s = self.settings
        if not (s.notify.enabled or s.escalation.enabled):
            return
        db = s.database
        self.workflow_pool = AsyncConnectionPool(
            db.conninfo(), min_size=1, max_size=4, kwargs={"autocommit": True},
            open=False, name="workflow",
        )  # fmt: skip
        self._stack.push_async_callback(self.workflow_pool.close, timeout=5)  # after its workers
        await self.workflow_pool.open(wait=True, timeout=db.connect_timeout_s)
        if ladders is not None:
            self.escalation = EscalationWorker(
                self.workflow_pool, ladders,
                poll_interval_s=s.escalation.poll_interval_s,
                batch_size=s.escalation.batch_size,
                on_enqueued=lambda: self.outbox.wake() if self.outbox is not None else None,
                page_ttl_s=s.paging.ack_ttl_s if s.paging.enabled and s.notify.enabled else None,
                sites=served_sites(s.cell),
            )  # fmt: skip
            self._spawn(self.escalation.run(), "escalation")
            self._spawn(self.escalation.listen(db.conninfo()), "escalation-listen")
        if s.notify.enabled:
            key = s.paging.ack_secret.get_secret_value() if s.paging.ack_secret else None
            self.outbox = OutboxWorker(
                self.workflow_pool, notifiers, s.notify,
                on_exhausted=self.escalation.on_exhausted if self.escalation else None,
                page_link=link_builder(s.paging.public_base_url, key),
                sites=served_sites(s.cell),
            )  # fmt: skip
            self._spawn(self.outbox.run(), "notify-outbox")
        log.info(
            "workflow workers started",
            extra={"escalation": self.escalation is not None, "notify": self.outbox is not None},
        )

    def registry_changed(self) -> None:
        """The registry was changed through the API: ingest and analysis reload it before
        relying on it again (a device registered a moment ago is known from its first message;
        a new binding applies at once). Any thread."""
        if self.ingest is not None:
            self.ingest.registry_changed()
        if self.analysis is not None:
            self.analysis.registry_changed()

    def _deliver(self, batch: Sequence[StoredMessage]) -> None:
        """The ingest sink (writer thread): analysis first (waits while its queue is full)."""
        assert self.analysis is not None
        self.analysis.submit(batch)
        if self._sink is not None:
            self._sink(batch)

    def _deliver_urgent(self, batch: Sequence[StoredMessage]) -> None:
        """The ingest event lane's sink (its writer thread): analysis's priority lane."""
        assert self.analysis is not None
        self.analysis.submit_urgent(batch)
        if self._sink is not None:
            self._sink(batch)

    def _prepare_database(self) -> timescale.TimescaleInfo:
        with psycopg.connect(self.settings.database.conninfo(), autocommit=True) as conn:
            check_schema(conn)
            info = timescale.detect(conn)
            self._owns_schema = timescale.owns_schema(conn)
            if self._owns_schema:
                log.warning(
                    "the gateway connects as the owner of the schema, so it could disable the "
                    "audit log's append-only triggers: set database.owner_user (README, "
                    "Operations)"
                )
            return info

    def _apply_policies(self, info: timescale.TimescaleInfo) -> None:
        with psycopg.connect(self.settings.database.conninfo(), autocommit=True) as conn:
            timescale.apply_policies(conn, info, self.settings.retention)

    async def _start_api(self) -> None:
        db = self.settings.database
        self.api_pool = ConnectionPool(
            db.conninfo(), min_size=1, max_size=db.pool_max, kwargs={"autocommit": True},
            open=False, name="api",
        )  # fmt: skip
        self._stack.push_async_callback(asyncio.to_thread, self.api_pool.close, 5)
        await asyncio.to_thread(self.api_pool.open, True, db.connect_timeout_s)
        pool, m = self.api_pool, self.settings.metrics
        self.metrics.registry.register(
            CarePathCollector(
                lambda: pool.connection(timeout=db.connect_timeout_s),
                cache_s=m.carepath_cache_s,
                gap_timeout_s=m.carepath_gap_timeout_s,
            )
        )
        app = build_app(self)
        config = uvicorn.Config(
            app,
            host=self.settings.api.host,
            port=self.settings.api.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # HTTPS with api.tls_certfile/keyfile (settings refuse plain HTTP off loopback).
            ssl_certfile=self.settings.api.tls_certfile,
            ssl_keyfile=self.settings.api.tls_keyfile,
        )
        self._server = uvicorn.Server(config)
        api = asyncio.create_task(self._server.serve(), name="api")
        self._tasks.append(api)
        self._stack.push_async_callback(self._stop_api, api)
        while not self._server.started:
            if api.done():
                api.result()
                raise GatewayError("HTTP API did not start")
            await asyncio.sleep(0.02)
        sock = self._server.servers[0].sockets[0]
        self.api_port = int(sock.getsockname()[1])
        log.info("api listening", extra={"host": self.settings.api.host, "port": self.api_port})

    async def _start_periodic(self) -> None:
        """The active's periodic work outside the alarm path, started with the lease (with
        failover) and never on the standby: one process acts, so an away-period release or
        a notice is never raised or sent by a process that is not the active. On the API's
        pool; without the API (``api=False``) on a small pool of their own."""
        s = self.settings
        pool = self.api_pool
        if pool is None:
            db = s.database
            pool = ConnectionPool(
                db.conninfo(), min_size=1, max_size=2, kwargs={"autocommit": True},
                open=False, name="periodic",
            )  # fmt: skip
            self._stack.push_async_callback(asyncio.to_thread, pool.close, 5)
            await asyncio.to_thread(pool.open, True, db.connect_timeout_s)
        # 探访关爱: overdue visits noticed, silent homes given a door-knock task.
        v = s.visits
        cfg = load_visits_config(v.config_path) if v.config_path else load_visits_config()
        sweeper = VisitsSweeper(
            pool,
            cfg,
            poll_interval_s=v.sweep_interval_s,
            notices=s.notify.enabled,
            sites=served_sites(s.cell),
        )
        self._spawn(self._sweep_visits(sweeper, v.sweep_interval_s), "visits-sweep")
        # Overdue notices and the monthly platform push through the outbox (gateway.platform).
        await start_message_workers(s, pool, cfg, self._stack, self._spawn)
        releaser = AwayReleaser(
            pool, poll_interval_s=s.family.release_interval_s, sites=served_sites(s.cell)
        )
        self._spawn(releaser.run(), "away-release")  # 随家人外出 over: held-back findings

    @staticmethod
    async def _sweep_visits(sweeper: VisitsSweeper, first_after_s: float) -> None:
        """The first sweep one interval after start-up (not in the middle of it), then each
        interval."""
        await asyncio.sleep(first_after_s)
        await sweeper.run()

    async def _watch(self) -> None:
        """Fail the process when a worker thread dies; keep the connectivity gauges fresh."""
        assert self.ingest is not None and self.session is not None
        assert self.analysis is not None
        while True:
            if not self.analysis.alive:
                raise GatewayError(f"analysis runner died: {self.analysis.failed!r}")
            if not self.ingest.alive:
                raise GatewayError(f"ingest writer died: {self.ingest.failed!r}")
            if not self.session.alive:
                raise GatewayError(f"mqtt session died: {self.session.failed!r}")
            self.metrics.broker_up.set(1 if self.session.connected.is_set() else 0)
            self.metrics.mqtt_inflight_bytes.set(self.session.inflight_bytes)
            self.metrics.mqtt_backpressure_pauses.set(self.session.backpressure_pauses)
            await asyncio.sleep(0.5)

    async def _recovery_loop(self) -> None:
        """Alarms still pending after alarms.recovery_grace_s get their incident (a dead or
        stuck analysis thread, without waiting for a restart)."""
        recovery = self.recovery
        assert recovery is not None
        down = False
        while True:
            await asyncio.sleep(self.settings.alarms.recovery_interval_s)
            try:
                await asyncio.to_thread(recovery.run_once)
                if down:
                    down = False
                    log.info("alarm recovery: database back")
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not down:
                    down = True
                    log.warning(
                        "alarm recovery: database unavailable",
                        extra={"error": type(exc).__name__},
                    )

    def healthy(self) -> bool:
        """Ingest, analysis, MQTT session and the workflow workers are all running (the
        analysis thread went round its loop lately). Database or broker outages are not
        ill health: the workers wait them out, and a restart would not help."""
        if self.standby:  # waiting for the lease: the API and the wait itself must run
            return not any(t.done() for t in self._tasks if t.get_name() != "sd-watchdog")
        if self.ingest is None or self.analysis is None or self.session is None:
            return False
        if not (self.ingest.alive and self.session.alive and self.analysis.alive):
            return False
        stale_s = self.sd.watchdog_s or 30.0
        if time.monotonic() - self.analysis.last_beat > stale_s:
            return False
        # The standby's wait ended when it took over (its failure would have ended run()).
        return not any(
            t.done() for t in self._tasks if t.get_name() not in ("sd-watchdog", "standby")
        )

    async def _retention_loop(self) -> None:
        assert self.tsinfo is not None
        info = self.tsinfo
        while True:
            try:
                removed = await asyncio.to_thread(self._retention_once, info)
                if any(removed.values()):
                    log.info("retention ran", extra={"removed": removed})
            except psycopg.OperationalError as exc:
                log.warning("retention skipped: database unavailable", extra={"error": str(exc)})
            await asyncio.sleep(self.settings.retention.interval_s)

    async def _anchor_loop(self) -> None:
        """Anchor the audit chain's head outside the database (gateway.audit_anchor)."""
        broken = False
        while True:
            try:
                result = await asyncio.to_thread(self._anchor_once)
                if not result.ok and not broken:
                    extra = {"seq": result.broken_seq, "problem": result.problem}
                    log.error("audit chain broken: head not anchored", extra=extra)
                broken = not result.ok
            except (psycopg.OperationalError, OSError, AnchorError) as exc:
                log.warning("audit anchor skipped", extra={"error": str(exc)[:200]})
            await asyncio.sleep(self.settings.audit.anchor_interval_s)

    def _anchor_once(self) -> VerifyResult:
        s = self.settings
        assert s.audit.anchor_key is not None
        key = s.audit.anchor_key.get_secret_value().encode()
        with psycopg.connect(s.database.conninfo(), autocommit=True) as conn:
            return audit_anchor.anchor_head(conn, s.audit_anchor_path(), key,
                                            s.audit.clock_step_tolerance_s)  # fmt: skip

    def _retention_once(self, info: timescale.TimescaleInfo) -> dict[str, int]:
        keep = self.settings.retention
        with psycopg.connect(self.settings.database.conninfo(), autocommit=True) as conn:
            removed = timescale.run_retention(conn, info, keep)
            removed["pending_alarms"] = pending_alarms.prune_handled(conn, keep.device_events_days)
            return removed

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether shutdown has begun (long-lived API streams end themselves on it)."""
        return self._stop.is_set() or (self._server is not None and self._server.should_exit)

    async def run(self) -> None:
        """Run until stop is requested or a worker fails (then raise)."""
        stop = asyncio.create_task(self._stop.wait())
        finished: set[asyncio.Task[Any]] = set()
        try:
            while True:
                waiting = [stop, *(t for t in self._tasks if t not in finished)]
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stop and task.exception() is not None:
                        raise GatewayError(f"{task.get_name()} failed") from task.exception()
                # The standby's wait ends when it took over: keep running as the active.
                if stop in done or any(t.get_name() != "standby" for t in done):
                    return
                finished.update(done)
        finally:
            stop.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task of the gateway, ended (and its error logged) on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        self._stack.push_async_callback(self._end_task, task)

    @staticmethod
    async def _end_task(task: asyncio.Task[None]) -> None:
        """Cancel ``task`` and wait for it; an error it ended with is logged, not swallowed."""
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "gateway task ended with an error",
                extra={"task": task.get_name(), "error": repr(exc)},
                exc_info=exc,
            )

    async def _stop_api(self, api: asyncio.Task[None]) -> None:
        """Let the HTTP server finish its requests (5 s at most), then end it."""
        if self._server is not None:
            self._server.should_exit = True
        await asyncio.wait({api}, timeout=5)
        await self._end_task(api)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sd.stopping()
        if self._server is not None:
            self._server.should_exit = True  # stop taking requests while the rest stops
        await self._stack.aclose()  # everything start-up opened, in reverse
        log.info("gateway stopped")
