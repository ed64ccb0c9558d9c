"""Acceptance tests of installed devices, TEST MODE, and commissioning records.

An installer starts a test for one device (:func:`start_test`, at most
``commissioning.acceptance_max_timeout_s``, 10 minutes); until it is finished, expires or its
steps are done (``steps_done_at``) the device is in **test mode**. Test mode never silences
a resident: the incident intake (:func:`gateway.escalation.intake.on_detections_stored`)
asks :func:`tests_in_progress` which devices of a batch of new detections are under test,
and stores as an observation (:func:`observe`) instead of an incident only the one detection
that is the step the test waits for (:func:`awaited`: the first emergency call of a button
under test, the first fall of a wearable under test, at or after the test's start); that
ends the test mode (:data:`ALARM_STEPS` are the only steps that raise alarms). Every other
detection of a device under test (a second press, a bed sensor's alarm, a press from before
the test) raises a real incident. A resident cancel ("I'm OK") from a device under test is
an observation (:func:`observe_cancel`) and cancels none of the resident's real alarms.
Starting, ending (finish, abort, steps done, expiry found) are audited (``device.test.*``);
:func:`active_tests` lists the devices under test for the console's banner.

The steps of a test depend on the device kind (:data:`STEPS`) and are evaluated from what
the gateway stored for the device since the test started (``device_events``, ``readings``,
``accel``; migration 0002) and from the test-mode observations (:func:`evaluate`).
Latency of a step = the message's ``received_at`` (when the gateway took it; it is
committed within ``ingest.max_delay_ms``) minus its device timestamp ``time``.

:func:`finish` ends test mode and stores the commissioning record (who, when, device,
step results with latencies, notes); :func:`records_csv` / :func:`records_pdf` export them.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg

from gateway import audit
from gateway.errors import ConflictError, InvalidError
from gateway.facts import DEFAULT_UTC_OFFSET_S_INT
from gateway.kit import acceptance as kit_acceptance
from gateway.l10n import DEFAULT_LANGUAGE, Lang
from gateway.reports import commissioning_pdf
from gateway.reports.commissioning_pdf import Person
from gateway.storage import acceptance as repo
from gateway.storage import console_reads

if TYPE_CHECKING:
    from gateway.analysis import DetectionRecord

log = logging.getLogger(__name__)
Conn = psycopg.Connection[Any]

STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "button": (
        ("press", "Press the button now."),
        ("no_page", "Nothing to do: the gateway checks that the test call paged nobody."),
    ),
    "bed_sensor": (
        ("presence_on", "Lie down on the bed."),
        ("presence_off", "Get up from the bed."),
        ("vitals", "Lie still on the bed until heart and breathing rate arrive."),
    ),
    "wearable": (
        ("worn", "Put the wearable on."),
        ("heart_rate", "Keep it on until a heart rate arrives."),
        ("motion", "Shake it hard, or drop it onto a cushion (a peak of at least 2.5 g)."),
    ),
    **kit_acceptance.STEPS,
}
HR_BED = (30.0, 180.0)
RR_BED = (5.0, 40.0)
HR_WEARABLE = (30.0, 220.0)
MOTION_PEAK_G = 2.5

# The step of a device kind that raises an alarm, and the detection kind that satisfies it.
ALARM_STEPS: dict[str, tuple[str, str]] = {
    "button": ("press", "emergency_call"),
    "wearable": ("motion", "fall"),
    **kit_acceptance.ALARM_STEPS,
}
_STEP_OF_DETECTION = {detection: step for step, detection in ALARM_STEPS.values()}
# A test step's device time may be this much before the test's start (clocks run behind).
AWAITED_CLOCK_SLACK_S = 5.0

# -- test mode (called by the incident intake) ------------------------------------------


def tests_in_progress(conn: Conn, records: Sequence[DetectionRecord]) -> dict[str, str]:
    """``{device_id: test_id}`` for the devices of new, unresolved detections under test.

    No query at all when no record names a device; otherwise one indexed lookup per batch.
    """
    devices = list({r.device_id for r in records if r.device_id is not None and not r.resolved})
    if not devices:
        return {}
    return repo.in_progress(conn, devices)


RESIDENT_CANCEL = "resident_cancel"


def awaited(conn: Conn, test_id: str, rec: DetectionRecord) -> bool:
    """Whether ``rec`` is the alarm step the test waits for (not yet seen, not before it).

    Locks the test row, so two detections of one batch or of two batches never both count
    as the step."""
    row = repo.lock_test_state(conn, test_id)
    if row is None or row[2] is not None:
        return False
    kind, started_at = row[0], row[1]
    step = ALARM_STEPS.get(kind)
    if step is None or rec.kind.value != step[1]:
        return False
    if rec.time < started_at.timestamp() - AWAITED_CLOCK_SLACK_S:
        return False
    return not repo.observed(conn, test_id, step[1])


def observe(conn: Conn, test_id: str, rec: DetectionRecord) -> None:
    """Store a test-mode detection as an observation of the test (no incident, no page)."""
    repo.add_observation(
        conn,
        repo.Observation(test_id, rec.device_id, rec.kind.value,
                         datetime.fromtimestamp(rec.time, UTC), rec.reason, dict(rec.details)),
    )  # fmt: skip
    log.info(
        "detection in test mode: no incident",
        extra={"test_id": test_id, "device": rec.device_id, "kind": rec.kind.value},
    )
    # The test's only alarm step is done: test mode ends here, the next alarm is real.
    repo.mark_steps_done(conn, test_id)
    audit.append(
        conn,
        "system",
        "device.test.steps_done",
        f"device:{rec.device_id}",
        {"test_id": test_id, "step": _STEP_OF_DETECTION.get(rec.kind.value, "")},
    )


def running_test_of(conn: Conn, device_id: str) -> str | None:
    """The id of the test ``device_id`` is in (TEST MODE now), or None."""
    return repo.in_progress(conn, [device_id]).get(device_id)


def observe_cancel(conn: Conn, test_id: str, device_id: str, at: float) -> None:
    """Store a resident "I'm OK" from a device under test as an observation: it must not
    cancel any of the resident's real alarms."""
    repo.add_observation(
        conn,
        repo.Observation(test_id, device_id, RESIDENT_CANCEL, datetime.fromtimestamp(at, UTC),
                         "resident cancel (I'm OK) in test mode: no alarm cancelled", {}),
    )  # fmt: skip
    log.info("resident cancel in test mode: no alarm cancelled",
             extra={"test_id": test_id, "device": device_id})  # fmt: skip


# -- tests --------------------------------------------------------------------------------


def steps_of(kind: str) -> list[dict[str, str]]:
    return [{"name": n, "prompt": p} for n, p in STEPS[kind]]


def active_tests(conn: Conn, site_id: str | None) -> list[dict[str, Any]]:
    """Devices in test mode now (of ``site_id``, or every site), for the console's banner:
    test, device, bed code, room, start, deadline and the server's ``now`` (countdown)."""
    rows = [t.model_dump() for t in repo.active(conn, site_id)]
    for r in rows:
        r["remaining_s"] = max(0.0, round((r["expires_at"] - r["now"]).total_seconds(), 1))
    return rows


def start_test(conn: Conn, device: Mapping[str, Any], user_id: str, timeout_s: float) -> str:
    """Put ``device`` in test mode for ``timeout_s``; return the test id (audited)."""
    dev = str(device["device_id"])
    if not device["active"]:
        raise ConflictError(f"device {dev!r} is decommissioned")
    test_id = "at-" + uuid.uuid4().hex[:16]
    with conn.transaction():
        repo.lock_device(conn, dev)
        # A test left to expire is over: close it (failed) so a new one may start.
        for expired in repo.fail_expired(conn, dev):
            audit.append(conn, "system", "device.test.expired", f"device:{dev}",
                         {"test_id": expired})  # fmt: skip
        running = repo.running(conn, dev)
        if running is not None:
            raise ConflictError(
                f"device {dev!r} already has a test running: {running}",
                f"finish or abort it first: safehome device test {dev} --abort",
            )
        resident = device["resident_id"]
        if resident is None and device["bed_id"] is not None:
            resident = repo.resident_of_bed(conn, device["bed_id"])
        repo.insert_test(conn, test_id, dict(device), resident, installer=user_id,
                         timeout_s=timeout_s)  # fmt: skip
        audit.append(
            conn,
            user_id,
            "device.test.start",
            f"device:{dev}",
            {"test_id": test_id, "timeout_s": timeout_s, "bed_id": device["bed_id"]},
        )
    log.info("acceptance test started", extra={"test_id": test_id, "device": dev})
    return test_id


def find_test(conn: Conn, test_id: str) -> dict[str, Any]:
    return repo.find_test(conn, test_id).model_dump()


@dataclass
class _Found:
    observed: dict[str, Any]
    latency_ms: float | None = None


def _latency(received: datetime, time: datetime) -> float:
    return round((received - time).total_seconds() * 1000.0, 1)


def _window(test: Mapping[str, Any]) -> tuple[datetime, datetime]:
    end = test["finished_at"] or min(test["expires_at"], test["now"])
    return test["started_at"], end


def _rows(
    conn: Conn, table: repo.DataTable, test: Mapping[str, Any], slack_s: float
) -> list[dict[str, Any]]:
    return repo.device_data(conn, table, str(test["device_id"]), _window(test), slack_s)


def _first_event(events: list[dict[str, Any]], types: set[str]) -> _Found | None:
    for e in events:
        if e["type"] in types:
            obs = {"event": e["type"], "device_time": e["time"], "received_at": e["received_at"]}
            return _Found(obs, _latency(e["received_at"], e["time"]))
    return None


def _reading(r: Mapping[str, Any], **extra: Any) -> _Found:
    obs = {"reading": r["type"], "device_time": r["time"], "received_at": r["received_at"], **extra}
    return _Found(obs, _latency(r["received_at"], r["time"]))


def _in(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and bounds[0] <= value <= bounds[1]


def _button(conn: Conn, test: Mapping[str, Any], slack: float, notified: bool) -> dict[str, Any]:
    press = _first_event(_rows(conn, "events", test, slack), {"press"})
    if press is not None:
        diverted = repo.count_observations_except(conn, str(test["test_id"]), RESIDENT_CANCEL)
        press.observed["incident_suppressed"] = bool(diverted)
    no_page: _Found | None = None
    if press is not None and not notified:
        no_page = _Found({"family_notified": False})
    return {"press": press, "no_page": no_page, "_failed": {"no_page"} if notified else set()}


def _bed(conn: Conn, test: Mapping[str, Any], slack: float) -> dict[str, Any]:
    events = _rows(conn, "events", test, slack)
    on = _first_event(events, {"bed_entry"})
    off = _first_event(events, {"bed_exit"})
    vitals = None
    seen_present = False
    for r in _rows(conn, "readings", test, slack):
        if r["presence"] is True:
            seen_present = True
            on = on or _reading(r, presence=True)
            if vitals is None and _in(r["heart_rate"], HR_BED) and _in(r["breathing_rate"], RR_BED):
                vitals = _reading(r, heart_rate=r["heart_rate"], breathing_rate=r["breathing_rate"])
        elif r["presence"] is False and seen_present and off is None:
            off = _reading(r, presence=False)
    return {"presence_on": on, "presence_off": off, "vitals": vitals}


def _wearable(conn: Conn, test: Mapping[str, Any], slack: float) -> dict[str, Any]:
    events = _rows(conn, "events", test, slack)
    worn = _first_event(events, {"worn"})
    heart = None
    for r in _rows(conn, "readings", test, slack):
        if worn is None and r["worn"] is True:
            worn = _reading(r, worn=True)
        if heart is None and r["type"] == "hr" and _in(r["heart_rate"], HR_WEARABLE):
            heart = _reading(r, heart_rate=r["heart_rate"])
    motion = None
    for e in events:
        peak = e["data"].get("peak_g") if e["type"] == "fall" else None
        if isinstance(peak, int | float) and peak >= MOTION_PEAK_G:
            motion = _first_event([e], {"fall"})
            if motion is not None:
                motion.observed["peak_g"] = float(peak)
            break
    if motion is None:
        for a in _rows(conn, "accel", test, slack):
            milli = np.frombuffer(a["samples"], dtype="<i2").reshape(int(a["n"]), 3)
            peak_g = float(np.sqrt((milli.astype(np.float64) ** 2).sum(axis=1)).max()) / 1000.0
            if peak_g >= MOTION_PEAK_G:
                motion = _Found({"reading": "accel", "device_time": a["time"],
                                 "received_at": a["received_at"], "peak_g": round(peak_g, 3)},
                                _latency(a["received_at"], a["time"]))  # fmt: skip
                break
    return {"worn": worn, "heart_rate": heart, "motion": motion}


def family_notified(conn: Conn, test: Mapping[str, Any]) -> bool:
    """Whether any contact of the test's resident got a notification during the test (until
    its steps were done)."""
    if test["resident_id"] is None:
        return False
    start, end = _window(test)
    # Once the steps are done test mode is over: a page after that is a real alarm's.
    done = test.get("steps_done_at")
    end = end if done is None else min(end, done)
    return repo.contacts_notified(conn, str(test["resident_id"]), start, end)


def evaluate(conn: Conn, test: Mapping[str, Any], slack_s: float) -> dict[str, Any]:
    """The test as the API shows it: status, steps with observations and latencies."""
    notified = family_notified(conn, test)
    kind = str(test["kind"])
    if kind == "button":
        found = _button(conn, test, slack_s, notified)
    elif kind == "bed_sensor":
        found = _bed(conn, test, slack_s)
    elif kind in kit_acceptance.STEPS:
        kit = kit_acceptance.steps_found(kind, _rows(conn, "events", test, slack_s),
                                         _rows(conn, "readings", test, slack_s))  # fmt: skip
        found = {step: _Found(obs, latency) for step, (obs, latency) in kit.items()}
    else:
        found = _wearable(conn, test, slack_s)
    failed_early: set[str] = found.pop("_failed", set())
    over = test["finished_at"] is not None or test["now"] >= test["expires_at"]
    steps = []
    for name, prompt in STEPS[kind]:
        f = found.get(name)
        if f is not None:
            status = "passed"
        elif name in failed_early or over:
            status = "failed"
        else:
            status = "waiting"
        step: dict[str, Any] = {"name": name, "prompt": prompt, "status": status,
                                "observed": {} if f is None else f.observed}  # fmt: skip
        if f is not None and f.latency_ms is not None:
            step["latency_ms"] = f.latency_ms
        steps.append(step)
    if test["result"] is not None:
        status = str(test["result"])
    elif test["now"] >= test["expires_at"]:
        status = "expired"
    elif all(s["status"] == "passed" for s in steps):
        status = "passed"
    elif any(s["status"] == "failed" for s in steps):
        status = "failed"
    else:
        status = "running"
    observations = repo.observations(conn, str(test["test_id"]))
    return {
        "test_id": test["test_id"], "device_id": test["device_id"], "site_id": test["site_id"],
        "kind": kind, "bed_code": test["bed_code"], "resident_id": test["resident_id"],
        "installer": test["installer"], "started_at": test["started_at"],
        "expires_at": test["expires_at"], "finished_at": test["finished_at"], "status": status,
        "test_mode": test["finished_at"] is None and test["now"] < test["expires_at"]
        and test.get("steps_done_at") is None,
        "steps_done_at": test.get("steps_done_at"),
        "steps": steps, "family_notified": notified,
        "observations": observations,
    }  # fmt: skip


def note_progress(conn: Conn, test: Mapping[str, Any], view: Mapping[str, Any]) -> None:
    """Test mode ends once every step passed (whichever comes first: this or the deadline)."""
    if test["finished_at"] is not None or test.get("steps_done_at") is not None:
        return
    if view["status"] != "passed":
        return
    with conn.transaction():
        if repo.mark_steps_done(conn, str(test["test_id"]), unfinished_only=True):
            audit.append(
                conn,
                "system",
                "device.test.steps_done",
                f"device:{test['device_id']}",
                {"test_id": test["test_id"], "step": "all"},
            )


def finish(
    conn: Conn,
    test_id: str,
    notes: str | None,
    *,
    abort: bool,
    slack_s: float,
    actor: str | None = None,
) -> dict[str, Any]:
    """End test mode and store the commissioning record; return it (audited as ``actor``,
    default the test's installer)."""
    with conn.transaction():
        repo.lock_test(conn, test_id)
        test = find_test(conn, test_id)
        if test["finished_at"] is not None:
            raise ConflictError(f"test {test_id} is already finished ({test['result']})",
                           "list the records: safehome commissioning list")  # fmt: skip
        # Evaluate as of now (or the expiry, if it passed): the window closes here.
        test = {**test, "finished_at": min(test["now"], test["expires_at"])}
        view = evaluate(conn, {**test, "result": None}, slack_s)
        passed = all(s["status"] == "passed" for s in view["steps"])
        result = "aborted" if abort else ("passed" if passed else "failed")
        repo.set_result(conn, test_id, test["finished_at"], result)
        steps = [{k: v for k, v in s.items() if k != "prompt"} for s in view["steps"]]
        record = repo.insert_record(
            conn, test, result, steps, family_notified=view["family_notified"], notes=notes
        ).model_dump()
        audit.append(
            conn,
            actor or str(test["installer"]),
            "device.test.finish",
            f"device:{test['device_id']}",
            {"test_id": test_id, "result": result},
        )
    log.info("acceptance test finished",
             extra={"test_id": test_id, "device": test["device_id"], "result": result})  # fmt: skip
    return record


def list_records(conn: Conn, site_id: str) -> list[dict[str, Any]]:
    return [r.model_dump() for r in repo.list_records(conn, site_id)]


def check_timeout(timeout_s: float | None, default_s: float, max_s: float) -> float:
    value = default_s if timeout_s is None else timeout_s
    if not 10 <= value <= max_s:
        raise InvalidError(f"timeout_s must be between 10 and {max_s:g} seconds")
    return value


# -- exports ------------------------------------------------------------------------------

EXPORT_HEADER = (
    "record_id", "test_id", "device_id", "kind", "bed_code", "installer",
    "started_at", "finished_at", "result", "steps", "family_notified", "notes",
)  # fmt: skip


def _steps_text(steps: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for s in steps:
        lat = s.get("latency_ms")
        parts.append(f"{s['name']}={s['status']}" + (f" ({lat:.0f} ms)" if lat is not None else ""))
    return "; ".join(parts)


def _export_row(r: Mapping[str, Any]) -> list[str]:
    return [str(r["record_id"]), r["test_id"], r["device_id"], r["kind"], r["bed_code"] or "",
            r["installer"], r["started_at"].isoformat(), r["finished_at"].isoformat(),
            r["result"], _steps_text(r["steps"]), "yes" if r["family_notified"] else "no",
            r["notes"] or ""]  # fmt: skip


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting a formula gets a leading ``'``."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def records_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """The records as CSV; cells that would start a formula (= + - @ tab CR) are escaped."""
    buf = io.StringIO()
    # RFC 4180 line ends: a CR inside a cell is quoted too (with "\n" alone it was not).
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADER)
    for r in records:
        writer.writerow([csv_cell(c) for c in _export_row(r)])
    return buf.getvalue()


def records_pdf(
    site_id: str,
    records: Sequence[Mapping[str, Any]],
    families: Sequence[str] | None = None,
    *,
    people: Mapping[str, Person] | None = None,
    site_name: str | None = None,
    utc_offset_s: int = DEFAULT_UTC_OFFSET_S_INT,
    printed_at: datetime | None = None,
    lang: Lang = DEFAULT_LANGUAGE,
) -> bytes:
    """A printable A4-landscape PDF of the records: every step, every cell wrapped, as many
    pages as needed, signature lines (:mod:`gateway.reports.commissioning_pdf`).

    Chinese text (notes, bed codes, names) is drawn with a CJK system font when one is
    installed (:mod:`gateway.reports.fonts`; ``families`` overrides the font list); without
    one it shows as boxes (logged once)."""
    return commissioning_pdf.render(
        site_id, records, people=people, site_name=site_name, utc_offset_s=utc_offset_s,
        printed_at=printed_at, lang=lang, families=families,
    )  # fmt: skip


def site_records_pdf(conn: Conn, site_id: str, lang: Lang = DEFAULT_LANGUAGE) -> bytes:
    """:func:`records_pdf` of a site's records, people by display name, times in the site's
    zone (printed now)."""
    people = {
        str(u["user_id"]): Person(u.get("display_name"), u.get("role"))
        for u in console_reads.staff_names(conn, site_id)
    }
    site = console_reads.site_clock(conn, site_id) or {}
    return records_pdf(
        site_id, list_records(conn, site_id), people=people, site_name=site.get("name"),
        utc_offset_s=int(site.get("utc_offset_s", DEFAULT_UTC_OFFSET_S_INT)),
        printed_at=datetime.now(UTC), lang=lang,
    )  # fmt: skip
