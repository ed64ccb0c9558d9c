"""Replay a recording through the analysis runner on a virtual clock, as fast as it goes.

Input is the simulator's recording format (``safehome simulate --record FILE``): one JSON
object a line, ``{"topic": ..., "payload": {...}, "received_at": <epoch s>}``. Each line goes
through the gateway's own path: :func:`devices.protocol.decode` against the device registry
(bad input is counted by reason, as ingest would dead-letter it; a repeated message id of a
device, e.g. a device's retry, is analysed once), then :class:`~gateway.analysis.AnalysisRunner`
``feed``/``advance`` with the clock set to the line's ``received_at``. No database and no broker:
the runner writes to a :class:`~gateway.analysis.MemoryStore` unless another store is given
(tests use :class:`~gateway.analysis.PostgresStore` to exercise the real persistence).

After the last line the clock runs on for a tail (default: the fall confirmation window and one
check interval), so that a fall near the end is still confirmed.

The registry comes from a site manifest (``--manifest``: device kinds, beds, residents,
locations, the site's UTC offset) or, without one, is inferred from the recording: the site and
device from each topic, the kind from the message types a device sent (``accel`` means a
wearable, ``vitals`` a bed sensor, ``press`` a button; a device seen only sending heartbeats and
states is taken for a button). Inferred devices have no resident, bed or location: each is
analysed on its own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Final

import orjson

from analytics.routine import format_duration
from devices.manifest import SiteManifest, load_manifest
from devices.protocol import (
    DeviceKind,
    ProtocolError,
    RejectReason,
    decode,
    parse_topic,
    topic_prefix_of,
)
from gateway.analysis import (
    AnalysisRunner,
    AnalysisStore,
    DetectionRecord,
    MemoryStore,
    RegistrySnapshot,
    ResidentInfo,
)
from gateway.ingest import StoredMessage
from gateway.registry import DeviceInfo
from gateway.settings import AnalysisSettings

__all__ = [
    "ReplayResult",
    "VirtualClock",
    "infer_registry",
    "registry_from_manifest",
    "render",
    "replay",
]

BAD_LINE: Final = "bad_line"
"""Rejection reason of a line that is not a recording object (not a protocol reason)."""

_WEARABLE_TYPES: Final = frozenset({"accel", "hr", "steps", "sos", "fall", "worn", "not_worn"})
_BED_TYPES: Final = frozenset({"vitals", "bed_exit", "bed_entry"})
_BUTTON_TYPES: Final = frozenset({"press", "long_press"})


class VirtualClock:
    """A clock that reads what it was last set to (the replay's "now")."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(slots=True)
class ReplayResult:
    """What a replay did. ``store`` holds the detections (a MemoryStore unless one was given)."""

    store: AnalysisStore
    registry: RegistrySnapshot
    messages: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None
    wall_s: float = 0.0

    @property
    def detections(self) -> list[DetectionRecord]:
        """Detections in the order they were written (only with a MemoryStore)."""
        return list(self.store.detections) if isinstance(self.store, MemoryStore) else []

    def summary(self) -> dict[str, Any]:
        raised: Counter[str] = Counter()
        resolved: Counter[str] = Counter()
        for rec in self.detections:
            (resolved if rec.resolved else raised)[rec.kind.value] += 1
        span = 0.0 if self.first is None or self.last is None else self.last - self.first
        return {
            "type": "summary",
            "messages": self.messages,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "devices": len(self.registry.devices),
            "span_s": round(span, 3),
            "wall_s": round(self.wall_s, 3),
            "detections": dict(raised),
            "resolutions": dict(resolved),
        }


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def registry_from_manifest(manifest: SiteManifest) -> RegistrySnapshot:
    """Devices, residents (care level 2, at home) and the UTC offset of a site manifest."""
    site = manifest.site
    devices = {
        d.id: DeviceInfo(d.id, site, d.kind, d.location, d.bed, d.resident, None)
        for d in manifest.devices
    }
    residents = {d.resident: ResidentInfo(d.resident, site) for d in manifest.devices if d.resident}
    return RegistrySnapshot(devices, residents, {site: float(manifest.utc_offset_s)})


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, parsed object or None if the line is not a recording object)."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield number, None
                continue
            ok = (
                isinstance(obj, dict)
                and isinstance(obj.get("topic"), str)
                and isinstance(obj.get("payload"), dict)
                and type(obj.get("received_at")) in (int, float)
            )
            yield number, obj if ok else None


def infer_registry(path: Path) -> RegistrySnapshot:
    """A registry from the topics and message types of a recording (see the module doc)."""
    sites: dict[str, str] = {}
    kinds: dict[str, DeviceKind] = {}
    for _, obj in _records(path):
        if obj is None:
            continue
        try:
            topic = parse_topic(obj["topic"], topic_prefix_of(obj["topic"]))
        except ProtocolError:
            continue
        sites.setdefault(topic.device, topic.site)
        payload: Mapping[str, Any] = obj["payload"]
        type_ = payload.get("type")
        if type_ in _WEARABLE_TYPES or (type_ == "heartbeat" and "worn" in payload):
            kinds[topic.device] = DeviceKind.WEARABLE
        elif type_ in _BED_TYPES:
            kinds[topic.device] = DeviceKind.BED_SENSOR
        elif type_ in _BUTTON_TYPES:
            kinds[topic.device] = DeviceKind.BUTTON
    devices = {
        dev: DeviceInfo(dev, site, kinds.get(dev, DeviceKind.BUTTON), None, None, None, None)
        for dev, site in sites.items()
    }
    return RegistrySnapshot(devices)


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------


def replay(
    path: Path,
    settings: AnalysisSettings,
    store: AnalysisStore,
    *,
    tail_s: float | None = None,
) -> ReplayResult:
    """Replay the recording at ``path`` into ``store`` (its registry names the devices)."""
    started = time.perf_counter()
    registry = store.registry()
    result = ReplayResult(store, registry)
    devices = registry.devices
    seen: set[tuple[str, str]] = set()
    runner: AnalysisRunner | None = None
    clock = VirtualClock(0.0)
    for _, obj in _records(path):
        if obj is None:
            result.rejected[BAD_LINE] += 1
            continue
        received = float(obj["received_at"])
        if runner is None:
            clock.now = received
            runner = AnalysisRunner(settings, store, clock=clock)
            runner.rebuild()
            result.first = received
        clock.now = max(clock.now, received)
        message = _decode(obj, received, devices, result)
        if message is not None:
            key = (message.device.device_id, message.message.envelope.msg_id)
            if key in seen:
                result.duplicates += 1
            else:
                seen.add(key)
                result.messages += 1
                runner.feed((message,))
        runner.advance()
    if runner is not None:
        result.last = clock.now
        tail = (
            settings.fall_confirm_window_s + settings.check_interval_s if tail_s is None else tail_s
        )
        end = clock.now + tail
        while clock.now < end:
            clock.now = min(end, clock.now + settings.check_interval_s)
            runner.advance()
        runner.flush(force=True)
    result.wall_s = time.perf_counter() - started
    return result


def _decode(
    obj: dict[str, Any],
    received: float,
    devices: Mapping[str, DeviceInfo],
    result: ReplayResult,
) -> StoredMessage | None:
    """Decode one line as ingest would; count the reason of a rejected one."""
    try:
        topic = parse_topic(obj["topic"], topic_prefix_of(obj["topic"]))
        info = devices.get(topic.device)
        if info is None:
            raise ProtocolError(RejectReason.UNKNOWN_DEVICE, "device is not in the registry")
        if info.site_id != topic.site:
            raise ProtocolError(RejectReason.IDENTITY_MISMATCH, "topic site differs")
        message = decode(topic, orjson.dumps(obj["payload"]), info.kind, now=received)
    except ProtocolError as exc:
        result.rejected[exc.reason.value] += 1
        return None
    return StoredMessage(info, message, received)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _local(t: float, offset_s: float) -> str:
    zone = timezone(timedelta(seconds=offset_s))
    return datetime.fromtimestamp(t, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S%z")


def render(result: ReplayResult, out: IO[str], *, as_json: bool) -> None:
    """Print the detections then the summary (``as_json``: one JSON object a line)."""
    registry = result.registry
    for rec in result.detections:
        if as_json:
            out.write(orjson.dumps({"type": "detection", **rec.to_json()}).decode() + "\n")
            continue
        offset = registry.utc_offset(rec.site_id or "")
        state = "resolved" if rec.resolved else "RAISED"
        out.write(
            f"{_local(rec.time, offset)}  {state:<8} {rec.kind.value:<17} {rec.subject:<14} "
            f"{rec.reason}\n"
        )
    summary = result.summary()
    if as_json:
        out.write(orjson.dumps(summary).decode() + "\n")
        return
    rejected = sum(result.rejected.values())
    raised = sum(summary["detections"].values())
    resolved = sum(summary["resolutions"].values())
    out.write(
        f"replayed {result.messages} messages from {summary['devices']} devices "
        f"({result.duplicates} duplicates, {rejected} rejected) covering "
        f"{format_duration(summary['span_s'])} in {result.wall_s:.2f} s: "
        f"{raised} detections, {resolved} resolutions\n"
    )


def run_replay(
    path: Path,
    settings: AnalysisSettings,
    out: IO[str],
    *,
    manifest: Path | None = None,
    as_json: bool = False,
    tail_s: float | None = None,
) -> int:
    """``safehome replay``: replay into memory and print; returns the exit status."""
    registry = registry_from_manifest(load_manifest(manifest)) if manifest else None
    store = MemoryStore(registry if registry is not None else infer_registry(path))
    render(replay(path, settings, store, tail_s=tail_s), out, as_json=as_json)
    return 0
