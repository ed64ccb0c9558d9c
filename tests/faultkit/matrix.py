"""The fault matrix: one function per fault, each running the same script around its fault.

Script of every fault (:class:`Run`): the site and a duty-staff user on shift, the page
receiver, the gateway as its own process behind two TCP proxies, the fleet. A round of alarms
before the fault proves the chain works; alarms and telemetry keep flowing while the fault is
injected; the fault ends (:meth:`Run.fault_over`); a last round of alarms; then the ledger is
polled until complete. The time from the end of the fault to a complete ledger is the
fault's **recovery time**. Each fault adds its own checks to the :class:`FaultResult`.

Long outages are scaled, never slept: the gateway's windows come from settings
(``analysis.catch_up_s`` = 2 s, reconnect and retry backoffs well under a second, MQTT
keepalive 5 s), so "down for 10 minutes" is any downtime longer than every window.
Every function takes an :class:`Env` (services owned by the caller: pytest fixtures or
``bench/faults.py``) and returns a :class:`FaultResult`; none asserts.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.faultkit.fleet import Fleet, Press
from tests.faultkit.ledger import (
    FaultResult,
    Ledger,
    LedgerReport,
    first_page_latency_ms,
    page_times,
)
from tests.faultkit.stack import (
    DEFAULT_TIERS,
    GatewayProc,
    Receiver,
    ServerPool,
    Site,
    Toml,
    install_site,
)
from tests.support import Broker, Database

__all__ = ["FAULTS", "Env", "Run", "run_fault"]

log = logging.getLogger("faultkit")

# Scaled outages (seconds). Each is longer than every window of the gateway that it spans.
TEN_MINUTES_S = 4.0  # > analysis.catch_up_s (2 s), alarms.recovery_grace_s (3 s), backoffs
FIVE_MINUTES_S = 4.0
PARTITION_S = 8.0  # > 1.5 x mqtt.keepalive_s (5 s): both ends give the link up
RECOVERY_DEADLINE_S = 30.0


@dataclass
class Env:
    """Services for one fault, owned by the caller."""

    root: Path
    db: Database
    broker: Broker
    pool: ServerPool | None = None  # the fault's own PostgreSQL (stop, fill) when it needs one


@dataclass
class Run:
    """One fault's running system and its books."""

    name: str
    env: Env
    site: Site
    receiver: Receiver
    gateway: GatewayProc
    fleet: Fleet
    ledger: Ledger
    result: FaultResult = field(init=False)
    over_at: float | None = None
    over_wall: float = 0.0

    def __post_init__(self) -> None:
        self.result = FaultResult(self.name, LedgerReport(), None)

    # -- traffic ---------------------------------------------------------------------------

    def press_round(self, buttons: list[str] | None = None, gap_s: float = 0.05) -> list[Press]:
        presses = []
        for dev in buttons if buttons is not None else self.site.buttons:
            presses.append(self.fleet.press(dev))
            time.sleep(gap_s)
        return presses

    def press_for(self, seconds: float, every_s: float = 0.5) -> list[Press]:
        """Presses by the bed buttons in turn, one every ``every_s``, for ``seconds``."""
        presses: list[Press] = []
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            presses.append(self.fleet.press(self.site.buttons[i % len(self.site.buttons)]))
            i += 1
            time.sleep(every_s)
        return presses

    def wait_baseline(self, timeout_s: float = 30.0) -> None:
        """The chain works before the fault: every alarm so far stored, raised, paged."""
        rep, done = self.ledger.wait_complete(timeout_s)
        log.info("%s: baseline %s", self.name, "complete" if done else "INCOMPLETE")
        if done is None:
            self.result.failures.append(f"before the fault: ledger incomplete: {rep.summary()}")

    # -- the fault -------------------------------------------------------------------------

    def fault_over(self) -> None:
        self.over_at = time.monotonic()
        self.over_wall = time.time()
        log.info("%s: fault over", self.name)

    def finish(self, extra_presses: bool = True) -> FaultResult:
        if self.over_at is None:
            self.fault_over()
        if extra_presses:
            self.press_round(self.site.buttons[:2])
        rep, done = self.ledger.wait_complete(RECOVERY_DEADLINE_S)
        log.info("%s: ledger %s", self.name, "complete" if done else "INCOMPLETE")
        # Freeze the books: no more telemetry, every publication answered, then all stored.
        if not self.fleet.stop_streams():
            self.result.failures.append("telemetry publications never answered by the broker")
        if not self.fleet.wait_settled(5):
            self.result.failures.append(f"{len(self.fleet.unsettled())} alarms never acked")
        self.ledger.wait_complete(10.0 if done is not None else 0.0)
        time.sleep(0.5)  # a late duplicate would show now
        rep = self.ledger.read()
        # Evidence that the fault bit: alarms sent before its end but acked only after it.
        self.note("held", sum(1 for p in self.fleet.presses if p.sent_at < self.over_wall
                              and (p.acked_at is None or p.acked_at > self.over_wall)))  # fmt: skip
        self.result.report = rep
        assert self.over_at is not None
        self.result.recovery_s = None if done is None else round(done - self.over_at, 2)
        pages = page_times(self.env.db, self.site, self.receiver)
        self.result.alarm_to_page_ms = first_page_latency_ms(
            self.fleet.presses, rep.incident_of, pages.get
        )
        return self.result

    def note(self, key: str, value: Any) -> None:
        self.result.notes[key] = value


@contextlib.contextmanager
def running(
    name: str,
    env: Env,
    *,
    beds: int = 6,
    config: Toml | None = None,
    tiers: list[Toml] | Callable[[Site], list[Toml]] | None = None,
    faketime: str | None = None,
    location_button: bool = False,
    unbound_button: bool = False,
    contacts: bool = False,
    heartbeat_s: float = 30.0,
    period_s: float = 0.5,
) -> Iterator[Run]:
    """The system for one fault, torn down whatever happens."""
    log.info("%s: installing the site", name)
    site = install_site(
        env.db, env.broker, beds=beds, location_button=location_button,
        unbound_button=unbound_button, contacts=contacts, period_s=period_s,
    )  # fmt: skip
    with Receiver() as receiver:
        ladder = tiers(site) if callable(tiers) else tiers or list(DEFAULT_TIERS)
        gw = GatewayProc(env.root / name, env.db, env.broker, receiver, config=config or {},
                         tiers=ladder, faketime=faketime)  # fmt: skip
        try:
            log.info("%s: starting the gateway", name)
            gw.start()
            log.info("%s: gateway ready, connecting the fleet", name)
            with Fleet(env.broker.port, site.devices, heartbeat_s=heartbeat_s) as fleet:
                ledger = Ledger(env.db, fleet, site, receiver)
                log.info("%s: fleet connected", name)
                yield Run(name, env, site, receiver, gw, fleet, ledger)
                log.info("%s: stopping", name)
        finally:
            gw.close()
            log.info("%s: gateway stopped", name)


def run_fault(name: str, env: Env) -> FaultResult:
    """Run the fault called ``name`` (a key of :data:`FAULTS`)."""
    return FAULTS[name](env)


# ---------------------------------------------------------------------------------------------
# the faults


def gateway_kill(env: Env) -> FaultResult:
    """``kill -9`` at a random point of the traffic, right after an alarm's ack (before its
    analysis), and right after a new incident is raised (before or while it is paged); each
    time the gateway stays down for the scaled "10 minutes" while alarms keep coming, among
    them a location-bound pull cord and an unbound button."""
    with running("gateway_kill", env, beds=7, location_button=True, unbound_button=True) as run:
        fleet, gw, site, db = run.fleet, run.gateway, run.site, env.db
        buttons, fresh = site.buttons[:-1], site.buttons[-1]  # fresh: no incident until step 3
        extra = [b for b in (site.location_button, site.unbound_button) if b is not None]
        run.press_round(buttons)
        run.wait_baseline()
        rng = random.Random()
        # 1. a random point while alarms and telemetry flow
        run.press_round(buttons, gap_s=0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        gw.kill9()
        run.press_round(extra)
        time.sleep(TEN_MINUTES_S)
        gw.start()
        # 2. right after an ack: every bed button at once, kill at the first "stored" ack
        presses = fleet.press_all(buttons)
        deadline = time.monotonic() + 10
        while not any(p.settled for p in presses) and time.monotonic() < deadline:
            time.sleep(0.001)
        gw.kill9()
        acked = [p for p in presses if p.status == "stored"]
        unanalysed = run.ledger.read(acked)
        run.note("acked_unanalysed_at_kill",
                 sum(1 for p in acked if p.msg_id not in unanalysed.incident_of))  # fmt: skip
        run.press_round([buttons[0], *extra])  # pressed during the outage
        time.sleep(TEN_MINUTES_S)
        gw.start()
        # 3. right after a new incident is raised: its page is due or on its way
        resident = site.resident_of[fresh]
        fleet.press(fresh)

        def raised() -> bool:
            return bool(db.scalar("SELECT count(*) FROM incidents WHERE resident_id = %s",
                                  (resident,)))  # fmt: skip

        _wait(raised, 10.0, step_s=0.005)
        gw.kill9()
        pages = int(db.scalar("SELECT count(*) FROM staff_pages p JOIN incidents i "
                              "ON i.id = p.incident_id WHERE i.resident_id = %s",
                              (resident,)) or 0)  # fmt: skip
        run.note("pages_at_kill", pages)
        time.sleep(TEN_MINUTES_S)
        gw.start()
        run.fault_over()
        result = run.finish()
        run.note("restarts", gw.starts - 1)
        for dev in extra:
            result.check(
                any(p.device_id == dev and p.msg_id in result.report.incident_of
                    for p in fleet.presses),
                f"{dev} (no resident) raised no incident",
            )  # fmt: skip
        return result


def postgres_down(env: Env) -> FaultResult:
    """PostgreSQL stopped for the scaled "5 minutes" while alarms and telemetry flow."""
    assert env.pool is not None, "postgres_down needs its own server"
    server = env.pool.server
    with running("postgres_down", env) as run:
        run.press_round()
        run.wait_baseline()
        server.stop(mode="fast")
        presses = run.press_for(FIVE_MINUTES_S)
        server.start()
        run.fault_over()
        result = run.finish()
        run.note("alarms_during_outage", len(presses))
        outages = sum(
            1
            for m in run.gateway.log_messages()
            if m.get("msg") == "database unavailable; holding messages unacknowledged"
        )
        result.check(outages == 1, f"outage logged {outages} times (want once)")
        return result


def broker_restart(env: Env) -> FaultResult:
    """The broker restarts (SIGTERM, persistence on) with alarms in flight."""
    with running("broker_restart", env) as run:
        run.press_round()
        run.wait_baseline()
        run.press_round(gap_s=0.0)
        env.broker.server.stop()
        time.sleep(1.0)
        run.press_round()  # devices are offline: kept and retried by the devices
        env.broker.server.start()
        run.fault_over()
        return run.finish()


def partition_broker(env: Env) -> FaultResult:
    """Gateway ↔ broker partitioned longer than both keepalives, then the held connections
    reset (as after a real partition), while devices keep publishing to the broker."""
    with running("partition_broker", env) as run:
        run.press_round()
        run.wait_baseline()
        run.gateway.mqtt_proxy.blackhole()
        presses = run.press_for(PARTITION_S)
        run.gateway.mqtt_proxy.cut()
        run.gateway.mqtt_proxy.heal()
        run.fault_over()
        result = run.finish()
        run.note("alarms_during_partition", len(presses))
        return result


def partition_database(env: Env) -> FaultResult:
    """Gateway ↔ PostgreSQL partitioned (statements and commits hang), then every held
    connection reset: the gateway cannot know whether its last commit happened."""
    with running("partition_database", env) as run:
        run.press_round()
        run.wait_baseline()
        run.gateway.db_proxy.blackhole()
        presses = run.press_for(FIVE_MINUTES_S)
        run.gateway.db_proxy.cut()
        run.gateway.db_proxy.heal()
        run.fault_over()
        result = run.finish()
        run.note("alarms_during_partition", len(presses))
        return result


def volume_full(env: Env) -> FaultResult:
    """The database volume (tables and WAL on one small tmpfs) fills up; an operator frees
    space; whatever PostgreSQL did meanwhile (errors, or a crash), nothing acked is lost."""
    assert env.pool is not None and env.pool.tmpfs_mb is not None, "volume_full needs a tmpfs"
    pool = env.pool
    with running("volume_full", env, period_s=0.1) as run:
        run.press_round()
        run.wait_baseline()
        with pool.full_volume():
            presses = run.press_for(FIVE_MINUTES_S)
        crashed = not pool.server.running()
        if crashed:  # the supervisor restarts it (systemd Restart=on-failure)
            pool.server.start()
        run.fault_over()
        result = run.finish()
        run.note("alarms_while_full", len(presses))
        run.note("postgres_crashed", crashed)
        errors = sum(1 for line in _lines(pool.server.log_file) if "No space left" in line)
        run.note("enospc_errors", errors)
        run.note("outages_logged", sum(1 for m in run.gateway.log_messages()
                                       if m.get("msg") == "database unavailable; holding "
                                       "messages unacknowledged"))  # fmt: skip
        result.check(errors > 0, "PostgreSQL never hit ENOSPC: the volume was not full")
        return result


def clocks(env: Env) -> FaultResult:
    """Device clocks ±1 h against a correct gateway, then the gateway's own clock (libfaketime)
    +1 h and −1 h against correct devices. Every alarm must be stored and raised."""
    with running("clocks", env) as run:
        fleet, site = run.fleet, run.site
        run.press_round()
        run.wait_baseline()
        fleet.set_clock_offset(site.buttons[0], +3600.0)
        fleet.set_clock_offset(site.buttons[1], -3600.0)
        run.press_round(site.buttons[:2])
        fleet.set_clock_offset(site.buttons[0], 0.0)
        fleet.set_clock_offset(site.buttons[1], 0.0)
        for offset in ("+1h", "-1h"):
            run.gateway.stop()
            run.gateway.faketime = offset
            run.gateway.start()
            run.press_round(site.buttons[2:4])
            time.sleep(1.0)
        run.gateway.stop()
        run.gateway.faketime = None
        run.gateway.start()
        run.fault_over()
        result = run.finish()
        result.check(not result.report.rejected, f"alarms rejected: {result.report.rejected[:3]}")
        wrong = [t for t in result.report.technical if t[0] == "device_clock_wrong"]
        per_device = Counter(t[1] for t in wrong)
        run.note("clock_wrong_incidents", len(wrong))
        result.check(per_device[site.buttons[0]] == 1,
                     f"{site.buttons[0]} (+1 h): {per_device[site.buttons[0]]} 'device clock "
                     "wrong' incidents (want 1)")  # fmt: skip
        result.check(all(n == 1 for n in per_device.values()),
                     f"'device clock wrong' raised more than once: {dict(per_device)}")  # fmt: skip
        return result


def backlog(env: Env) -> FaultResult:
    """A device flushes a backlog stored while it was cut off (10 minutes old), out of
    order, and then replays it all again; the other devices keep pressing."""
    with running("backlog", env) as run:
        fleet, site = run.fleet, run.site
        run.press_round()
        run.wait_baseline()
        dev = site.buttons[0]
        old = fleet.build_backlog(dev, presses=4, readings=40, start=time.time() - 600.0,
                                  step_s=2.0)  # fmt: skip
        shuffled = old[:]
        random.Random(7).shuffle(shuffled)
        fleet.publish_backlog(dev, shuffled)
        run.press_round(site.buttons[1:])
        time.sleep(1.0)
        fleet.publish_backlog(dev, list(reversed(old)))  # replayed: every message again
        run.fault_over()
        result = run.finish()
        dup_acks = sum(1 for p in fleet.presses for s, _ in p.acks if s == "duplicate")
        run.note("backlog_messages", len(old))
        run.note("duplicate_acks", dup_acks)
        run.note(
            "out_of_order_counted", int(run.gateway.metric("safehome_ingest_out_of_order_total"))
        )
        return result


def flood(env: Env) -> FaultResult:
    """One device floods 1,000 msg/s while the others press: their alarms stay fast, the
    gateway's memory stays bounded, and the per-device limiter engages."""
    with running("flood", env, beds=6) as run:
        fleet, site, gw = run.fleet, run.site, run.gateway
        run.press_round()
        run.wait_baseline()
        flooder = site.sensors[0]
        run.ledger.ignore_telemetry_of.add(flooder)
        rss_before = gw.rss_kb()
        fleet.flood(flooder, 1000.0)
        start = len(fleet.presses)
        peak = rss_before
        end = time.monotonic() + 6.0
        i = 0
        while time.monotonic() < end:
            fleet.press(site.buttons[1 + i % (len(site.buttons) - 1)])
            i += 1
            peak = max(peak, gw.rss_kb())
            time.sleep(0.25)
        fleet.flood(flooder, 0.0)
        sent, _acked = fleet.flood_counts(flooder)
        run.fault_over()
        result = run.finish(extra_presses=False)
        during = fleet.presses[start:]
        acks = [(p.acked_at - p.sent_at) * 1000 for p in during if p.acked_at is not None]
        raised = result.report.raised_at
        lat = [(raised[p.msg_id] - p.sent_at) * 1000 for p in during if p.msg_id in raised]
        p99 = float(np.percentile(lat, 99)) if len(lat) == len(during) else None
        ack_p99 = float(np.percentile(acks, 99)) if acks else None
        limited = gw.metric("safehome_ingest_rate_limited_total") + sum(
            v for k, v in _dead_letters(gw).items() if "rate" in k
        )
        run.note("flood_sent", sent)
        run.note("flood_rate_per_s", round(sent / 6.0))
        run.note("alarm_ack_p99_ms", None if ack_p99 is None else round(ack_p99))
        run.note("alarm_raised_p99_ms", None if p99 is None else round(p99))
        run.note("rss_mb", f"{rss_before // 1024}->{peak // 1024}")
        run.note("limited", int(limited))
        result.check(
            p99 is not None and p99 < 2000.0, f"other devices' press→incident p99 {p99} ms"
        )
        result.check(peak < rss_before + 300 * 1024, f"RSS grew {rss_before}->{peak} kB")
        result.check(limited > 0, "the per-device limiter never engaged (nothing rate-limited)")
        return result


def _notifier_tiers(site: Site) -> list[Toml]:
    # With staff paging the duty tier's pages fail too and must hand over early; without it
    # the duty tier is a console page that times out at once.
    duty_timeout = 120.0 if site.paging else 1.0
    return [
        {"name": "duty_staff", "audience": "duty_staff", "timeout_s": duty_timeout},
        {"name": "contacts", "audience": "contacts", "timeout_s": 120.0},
        {"name": "emergency", "audience": "emergency", "timeout_s": 3600.0, "reminder_s": 2.0,
         "instruction": "无人确认此告警 / call 120 now."},
    ]  # fmt: skip


def notifier_failing(env: Env) -> FaultResult:
    """Every channel fails: family webhooks with 503 and with a timeout, the on-duty user's
    pager with 503. Each attempt is recorded; each tier whose channels all failed hands over
    at once (not at its 120 s timeout), up to the emergency tier; once the pager works again
    the emergency tier's next page reaches it."""
    with running("notifier_failing", env, contacts=True, tiers=_notifier_tiers, beds=3) as run:
        receiver, db = run.receiver, env.db
        receiver.fail("family")
        receiver.hang("family2")
        if run.site.paging:
            receiver.fail("pager")
        presses = run.press_round()
        raised = time.monotonic()

        def moved_on() -> bool:
            n = db.scalar("SELECT count(DISTINCT incident_id) FROM staff_pages "
                          "WHERE kind = 'instruction'")  # fmt: skip
            return int(n or 0) >= len(presses)

        _wait(moved_on, 60.0)
        moved = time.monotonic() - raised
        time.sleep(1.5)  # attempts still running (the hanging channel) settle
        receiver.heal("pager")
        run.fault_over()
        result = run.finish(extra_presses=False)
        family = int(db.scalar("SELECT count(*) FROM notification_attempts "
                               "WHERE channel LIKE 'webhook:family%%'") or 0)  # fmt: skip
        family_seen = sum(1 for d in receiver.refused if d.path.startswith("family"))
        pager_failed = int(db.scalar("SELECT count(*) FROM notification_attempts WHERE "
                                     "channel = 'webhook:pager' AND result <> 'delivered'")
                           or 0)  # fmt: skip
        pager_seen = sum(1 for d in receiver.refused if d.path == "pager")
        delivered = int(db.scalar("SELECT count(*) FROM notification_attempts WHERE result "
                                  "= 'delivered' AND channel LIKE 'webhook:family%%'")
                        or 0)  # fmt: skip
        run.note("moved_on_s", round(moved, 1))
        run.note("family_attempts", f"{family} recorded/{family_seen} seen")
        run.note("pager_failures", f"{pager_failed} recorded/{pager_seen} seen")
        result.check(moved_on(), "escalation did not reach the emergency tier")
        result.check(moved < 60.0, f"escalation moved on after {moved:.0f} s (tiers wait 120)")
        result.check(family == family_seen > 0, f"family attempts {family} != seen {family_seen}")
        result.check(pager_failed == pager_seen, f"pager failures {pager_failed} != {pager_seen}")
        result.check(delivered == 0, "a failing channel was recorded as delivered")
        return result


def silent_device(env: Env) -> FaultResult:
    """A button goes silent (no heartbeat, connection kept) and another drops its TCP
    connection (the broker publishes its will): one technical incident each within the
    deadline, each cleared once when the device is back."""
    config: Toml = {"analysis": {"heartbeat_button_s": 2.0, "heartbeat_bed_sensor_s": 2.0,
                                 "deadline_factor": 2.0}}  # fmt: skip
    with running("silent_device", env, config=config, heartbeat_s=1.0) as run:
        fleet, site, db = run.fleet, run.site, env.db
        run.press_round()
        run.wait_baseline()
        silent, dropped = site.buttons[1], site.buttons[2]
        t0 = time.monotonic()
        fleet.silence(silent)
        fleet.drop_connection(dropped, reconnect=False)

        def offline(dev: str) -> bool:
            return bool(db.scalar("SELECT count(*) FROM incidents WHERE technical AND "
                                  "type = 'device_offline' AND subject = %s", (dev,)))  # fmt: skip

        raised_silent = _wait(lambda: offline(silent), 30.0)
        raised_dropped = _wait(lambda: offline(dropped), 30.0)
        run.note("silent_raised_s", None if raised_silent is None else round(raised_silent - t0, 1))
        run.note("dropped_raised_s",
                 None if raised_dropped is None else round(raised_dropped - t0, 1))  # fmt: skip
        run.press_round([site.buttons[0]])
        fleet.resume(silent)
        fleet.resume(dropped)
        run.fault_over()

        def cleared(dev: str) -> bool:
            return bool(db.scalar("SELECT count(*) FROM incidents WHERE technical AND "
                                  "subject = %s AND state = 'resolved'", (dev,)))  # fmt: skip

        _wait(lambda: cleared(silent) and cleared(dropped), 30.0)
        result = run.finish()
        deadline_s = 2.0 * 2.0
        for dev, at in ((silent, raised_silent), (dropped, raised_dropped)):
            result.check(at is not None and at - t0 <= deadline_s + 6.0,
                         f"{dev}: no device_offline within its deadline")  # fmt: skip
            mine = [t for t in result.report.technical if t[1] == dev]
            result.check(len(mine) == 1, f"{dev}: {len(mine)} technical incidents (want 1)")
            result.check(all(t[2] == "resolved" and t[3] == 1 for t in mine),
                         f"{dev}: not cleared exactly once: {mine}")  # fmt: skip
        others = [t for t in result.report.technical if t[1] not in (silent, dropped)]
        run.note("other_technical", len(others))
        return result


FAULTS: dict[str, Callable[[Env], FaultResult]] = {
    "gateway_kill": gateway_kill,
    "postgres_down": postgres_down,
    "broker_restart": broker_restart,
    "partition_broker": partition_broker,
    "partition_database": partition_database,
    "volume_full": volume_full,
    "clocks": clocks,
    "backlog": backlog,
    "flood": flood,
    "notifier_failing": notifier_failing,
    "silent_device": silent_device,
}
NEEDS_POOL = frozenset({"postgres_down", "volume_full"})


# ---------------------------------------------------------------------------------------------
# helpers


def _wait(pred: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> float | None:
    """Poll ``pred``; the ``time.monotonic()`` it became true, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(step_s)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _dead_letters(gw: GatewayProc) -> dict[str, float]:
    """``safehome_ingest_dead_letters_total`` per reason label."""
    import urllib.request

    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"{gw.api}/metrics", timeout=3) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("safehome_ingest_dead_letters_total{"):
            label = line.split("{", 1)[1].split("}", 1)[0]
            out[label] = out.get(label, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
