"""Device health: silent or offline devices, dead home hubs and sites, batteries, wearables.

One :class:`DeviceHealthTracker` for the whole gateway (or one per site). The runner
registers every commissioned device with its kind, location (room or home) and site,
forwards what the devices send, and calls :meth:`DeviceHealthTracker.check` every few
seconds. Detections (each raised once, and resolved once):

* ``DEVICE_OFFLINE`` (subject: device id): no message for the device's deadline
  (``deadline_factor`` x heartbeat interval, per kind or per device, like SCAIP's
  receiver-set interval), or an explicit ``offline`` state (MQTT last will), which makes the
  device silent at once.
* ``HUB_OFFLINE`` (subject: location id): all devices of one home/room silent together.
* ``SITE_OFFLINE`` (subject: site id): all devices of a whole site silent together.
* ``LOW_BATTERY`` (subject: device id): at or below ``battery_low_pct``, cleared only at
  ``battery_clear_pct`` or above (hysteresis: a battery hovering at the threshold alerts once).
* ``NOT_WORN`` (subject: device id): a wearable reported ``not_worn`` and stayed so for
  ``not_worn_s`` of waking time.

"Together", precisely. A device is *silent* once it is past its deadline or has reported
offline since its last message. A home (location) is down when

1. every tracked device of the location is silent, and
2. at least ``min_hub_devices`` of them fell silent consistently with one common failure:
   device ``d`` counts when ``d.last_seen + d.interval + together_slack_s`` is at or after the
   last message heard from the location; i.e. ``d`` would have been due to report after the
   location went quiet. A device that died days earlier does not count (it has its own
   DEVICE_OFFLINE) and cannot make a lone later failure look like a hub failure.

A site is down by the same rule one level up: every device of the site silent, and at
least ``min_site_locations`` locations consistent with the site's last message (a location
counts when one of its devices was due to report after the site went quiet).

Individual alerts wait for the group decision. Devices rarely cross their deadlines at the
same moment (a 1 Hz bed sensor is late after 150 s, a button only after 750 s), so a silent
device gets DEVICE_OFFLINE only once the larger explanations are ruled out: some other device
of its location (for the hub) and of its site (for the site) has been heard since the silent
device's last message, or the group can no longer go down together, or ``group_hold_s``
has passed. In the common case (one dead device in a home that also has a 1 Hz bed sensor)
that is immediate. While HUB_OFFLINE (or SITE_OFFLINE) is open its devices raise no
DEVICE_OFFLINE (alerts raised before the group formed stay open until their device returns),
and while SITE_OFFLINE is open no HUB_OFFLINE is raised in that site. When a group comes
back (first device heard again), its resolved detection is emitted; devices reconnect one by
one, so each still-silent member gets one deadline of grace from that moment (and after a
site outage each location gets its fastest device's deadline) before it is judged on its own.

Feed times should be the gateway's receive times (device clocks drift). Rebuild after a
restart: :meth:`DeviceHealthTracker.register` each device with its stored ``last_seen``,
``offline``, ``battery_pct`` and ``worn``/``worn_since``, then :meth:`resume` with the time
the gateway started receiving again (its own downtime is not the devices' silence); the
first :meth:`check` re-raises whatever still holds (``started`` is data-derived, so the
runner can match open incidents; :meth:`open_conditions` lists them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from analytics.routine import (
    format_duration,
    format_time,
    window_overlap_s,
)
from analytics.types import DEFAULT_UTC_OFFSET_S, DetailValue, Detection, DetectionKind

BED_SENSOR: Final = "bed_sensor"
WEARABLE: Final = "wearable"
BUTTON: Final = "button"

KIND_LABELS: Final[Mapping[str, str]] = {
    BED_SENSOR: "bed sensor",
    WEARABLE: "wearable",
    BUTTON: "emergency button",
}


def _default_intervals() -> dict[str, float]:
    return {BUTTON: 300.0, BED_SENSOR: 60.0, WEARABLE: 120.0}


@dataclass(frozen=True, slots=True)
class DeviceHealthParams:
    """Thresholds of the device-health tracker (per-device overrides go to ``register``)."""

    utc_offset_s: float = DEFAULT_UTC_OFFSET_S  # for a device registered without its site's
    heartbeat_interval_s: Mapping[str, float] = field(default_factory=_default_intervals)
    default_interval_s: float = 300.0  # kinds not listed above
    deadline_factor: float = 2.5  # silent after factor x interval without a message
    battery_low_pct: float = 15.0
    battery_clear_pct: float = 25.0
    not_worn_s: float = 2 * 3600.0  # of waking time
    waking_start_s: float = 7 * 3600.0  # local time of day
    waking_end_s: float = 21 * 3600.0
    min_hub_devices: int = 2  # a single-device home is never a "hub" incident
    min_site_locations: int = 2
    together_slack_s: float = 60.0
    evidence_slack_s: float = 5.0  # "heard after" must be later by more than this
    group_hold_s: float = 900.0  # longest wait for a group decision before alerting alone


class _Device:
    __slots__ = (
        "back_at",
        "battery",
        "battery_open",
        "care_paused",
        "deadline",
        "grace_until",
        "id",
        "interval",
        "kind",
        "last_seen",
        "location",
        "not_worn_open",
        "offline_at",
        "offline_open",
        "resumed",
        "silent",
        "silent_since",
        "site",
        "utc_offset",
        "waking",
        "worn",
        "worn_changed",
    )

    def __init__(
        self,
        device_id: str,
        kind: str,
        *,
        site: str,
        location: str,
        interval: float,
        deadline: float,
        last_seen: float,
        waking: tuple[float, float],
        utc_offset: float,
    ) -> None:
        self.id = device_id
        self.kind = kind
        self.site = site
        self.location = location
        self.interval = interval
        self.deadline = deadline
        self.last_seen = last_seen
        self.offline_at = -math.inf
        self.resumed = -math.inf  # the gateway (re)started listening: deadlines count from here
        self.silent = False
        self.silent_since = math.inf
        self.grace_until = -math.inf  # no individual alert before this (group just back)
        self.back_at: float | None = None
        self.offline_open: Detection | None = None
        self.battery: float | None = None
        self.battery_open: Detection | None = None
        self.worn: bool | None = None
        self.worn_changed = last_seen
        self.not_worn_open: Detection | None = None
        self.care_paused = False
        self.waking = waking
        self.utc_offset = utc_offset  # the site's: local waking time is the site's

    @property
    def label(self) -> str:
        return f"{KIND_LABELS.get(self.kind, self.kind)} {self.id}"


class DeviceHealthTracker:
    """Heartbeat deadlines, offline grouping, batteries and wearing, for many devices.

    Feed methods are O(1): :meth:`on_seen` for every message of a device (readings, events,
    heartbeats all prove it alive), :meth:`on_heartbeat`, :meth:`on_state`,
    :meth:`on_battery`, :meth:`on_worn`. :meth:`check` is O(number of devices).
    """

    def __init__(self, params: DeviceHealthParams | None = None) -> None:
        self.params = params if params is not None else DeviceHealthParams()
        self._devices: dict[str, _Device] = {}
        self._sites: dict[str, dict[str, list[_Device]]] = {}
        self._hub_open: dict[tuple[str, str], Detection] = {}
        self._site_open: dict[str, Detection] = {}
        self._loc_grace: dict[tuple[str, str], float] = {}
        self._outbox: list[Detection] = []

    # ---------------------------------------------------------------- registry

    def register(
        self,
        device_id: str,
        kind: str,
        *,
        site: str,
        location: str,
        now: float,
        heartbeat_interval_s: float | None = None,
        deadline_s: float | None = None,
        last_seen: float | None = None,
        offline: bool = False,
        battery_pct: float | None = None,
        worn: bool | None = None,
        worn_since: float | None = None,
        waking_window_s: tuple[float, float] | None = None,
        utc_offset_s: float | None = None,
    ) -> None:
        """Start tracking a device, or update a tracked one (kind, place, interval).

        ``heartbeat_interval_s`` / ``deadline_s`` override the kind's defaults for this
        device. The restore arguments (``last_seen``, ``offline``, ``battery_pct``,
        ``worn``, ``worn_since``) rebuild the state after a restart; without ``last_seen``
        the device gets one full deadline from ``now``. ``waking_window_s`` is the local
        (start, end) of waking time for NOT_WORN, e.g. from the resident's routine, in the
        local time of ``utc_offset_s``: the device's site's offset (default
        :attr:`DeviceHealthParams.utc_offset_s`, for a device whose site is not known).
        """
        p = self.params
        interval = (
            heartbeat_interval_s
            if heartbeat_interval_s is not None
            else p.heartbeat_interval_s.get(kind, p.default_interval_s)
        )
        deadline = deadline_s if deadline_s is not None else p.deadline_factor * interval
        waking = (
            waking_window_s if waking_window_s is not None else (p.waking_start_s, p.waking_end_s)
        )
        offset = utc_offset_s if utc_offset_s is not None else p.utc_offset_s
        d = self._devices.get(device_id)
        if d is None:
            d = _Device(
                device_id,
                kind,
                site=site,
                location=location,
                interval=interval,
                deadline=deadline,
                last_seen=last_seen if last_seen is not None else now,
                waking=waking,
                utc_offset=offset,
            )
            self._devices[device_id] = d
            self._sites.setdefault(site, {}).setdefault(location, []).append(d)
        else:
            if (d.site, d.location) != (site, location):
                self._unlink(d)
                d.site, d.location = site, location
                self._sites.setdefault(site, {}).setdefault(location, []).append(d)
            d.kind, d.interval, d.deadline, d.waking = kind, interval, deadline, waking
            d.utc_offset = offset
            if last_seen is not None and last_seen > d.last_seen:
                d.last_seen = last_seen
        if offline:
            d.offline_at = max(d.offline_at, d.last_seen)
        if worn is not None:
            d.worn = worn
            d.worn_changed = worn_since if worn_since is not None else d.last_seen
        if battery_pct is not None:
            self.on_battery(device_id, d.last_seen, battery_pct)

    def remove(self, device_id: str, now: float) -> None:
        """Decommission a device: stop tracking it; its open conditions are resolved."""
        d = self._devices.pop(device_id, None)
        if d is None:
            return
        why = f"{d.label} removed from service at {self._clock(now, d)}"
        for kind in (
            DetectionKind.DEVICE_OFFLINE,
            DetectionKind.LOW_BATTERY,
            DetectionKind.NOT_WORN,
        ):
            self._resolve_device(d, kind, now, why)
        self._unlink(d)

    def _unlink(self, d: _Device) -> None:
        locs = self._sites.get(d.site)
        if locs is None:
            return
        devs = locs.get(d.location)
        if devs is not None and d in devs:
            devs.remove(d)
            if not devs:
                del locs[d.location]
                self._loc_grace.pop((d.site, d.location), None)
                hub = self._hub_open.pop((d.site, d.location), None)
                if hub is not None:
                    self._outbox.append(
                        _resolved(hub, hub.time, f"location {d.location} has no devices left")
                    )
        if not locs:
            del self._sites[d.site]
            site = self._site_open.pop(d.site, None)
            if site is not None:
                self._outbox.append(
                    _resolved(site, site.time, f"site {d.site} has no devices left")
                )

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    # ---------------------------------------------------------------- feed

    def on_seen(self, device_id: str, t: float) -> None:
        """Any message from the device (reading, event, heartbeat): it is alive at ``t``."""
        d = self._devices.get(device_id)
        if d is not None and t > d.last_seen:
            d.last_seen = t
            if d.silent and d.back_at is None:
                d.back_at = t

    def on_heartbeat(self, device_id: str, t: float, battery_pct: float | None = None) -> None:
        """A heartbeat, optionally carrying the battery level."""
        self.on_seen(device_id, t)
        if battery_pct is not None:
            self.on_battery(device_id, t, battery_pct)

    def on_state(self, device_id: str, t: float, online: bool) -> None:
        """A ``state`` message: online, or offline (also the MQTT last will): silent at once."""
        if online:
            self.on_seen(device_id, t)
            return
        d = self._devices.get(device_id)
        if d is not None:
            d.offline_at = max(d.offline_at, t)

    def on_battery(self, device_id: str, t: float, battery_pct: float) -> None:
        """A battery level in percent; raises at <= low, clears at >= clear."""
        d = self._devices.get(device_id)
        if d is None:
            return
        p = self.params
        d.battery = battery_pct
        if d.battery_open is None and battery_pct <= p.battery_low_pct:
            action = "charge it" if d.kind == WEARABLE else "replace or charge the battery"
            d.battery_open = Detection(
                kind=DetectionKind.LOW_BATTERY,
                subject=d.id,
                time=t,
                reason=(
                    f"{d.label} battery at {battery_pct:.0f} % (alert at "
                    f"{p.battery_low_pct:.0f} % or less): {action}"
                ),
                details=self._dev_details(d, battery_pct=battery_pct, limit_pct=p.battery_low_pct),
                started=t,
            )
            self._outbox.append(d.battery_open)
        elif d.battery_open is not None and battery_pct >= p.battery_clear_pct:
            self._resolve_device(
                d,
                DetectionKind.LOW_BATTERY,
                t,
                f"{d.label} battery back to {battery_pct:.0f} %",
                battery_pct=battery_pct,
            )

    def on_worn(self, device_id: str, t: float, worn: bool) -> None:
        """A wearable's ``worn`` / ``not_worn`` event."""
        d = self._devices.get(device_id)
        if d is None:
            return
        self.on_seen(device_id, t)
        if worn != d.worn:
            d.worn = worn
            d.worn_changed = t
        if worn and d.not_worn_open is not None:
            self._resolve_device(
                d, DetectionKind.NOT_WORN, t, f"{d.label} worn again at {self._clock(t, d)}"
            )

    def set_care_paused(self, device_id: str, t: float, paused: bool) -> None:
        """Pause the care check of a device (NOT_WORN) while its resident is away."""
        d = self._devices.get(device_id)
        if d is None or d.care_paused == paused:
            return
        d.care_paused = paused
        if paused:
            self._resolve_device(
                d,
                DetectionKind.NOT_WORN,
                t,
                f"monitoring paused at {self._clock(t, d)}: resident away",
            )
        elif d.worn is False:
            d.worn_changed = max(d.worn_changed, t)

    def resume(self, now: float) -> None:
        """The gateway itself was not receiving until ``now`` (start-up, broker reconnect).

        Every device's deadline restarts at ``now`` (explicit offline states stay), so a
        gateway outage does not look like every site going offline. Do not call
        :meth:`check` while the gateway's own receive path is down.
        """
        for d in self._devices.values():
            d.resumed = max(d.resumed, now)

    # ---------------------------------------------------------------- check

    def open_conditions(self) -> list[Detection]:
        """Raise detections of every condition currently open (for reconciliation)."""
        out: list[Detection] = list(self._site_open.values()) + list(self._hub_open.values())
        for d in self._devices.values():
            out.extend(
                x for x in (d.offline_open, d.battery_open, d.not_worn_open) if x is not None
            )
        return out

    def check(self, now: float) -> list[Detection]:
        """Detections due at ``now``. O(number of devices)."""
        out, self._outbox = self._outbox, []
        for site, locs in self._sites.items():
            self._check_site(site, locs, now, out)
        return out

    def _check_site(
        self, site: str, locs: dict[str, list[_Device]], now: float, out: list[Detection]
    ) -> None:
        p = self.params
        slack = p.evidence_slack_s
        # pass 1: silence per device, aggregates per location and for the site
        site_last = -math.inf
        site_alive_max = -math.inf
        site_all_silent = True
        n_devices = 0
        summaries: list[tuple[str, list[_Device], float, float, bool, float, float]] = []
        for loc, devs in locs.items():
            loc_last = loc_alive_max = loc_expect = -math.inf
            loc_silent_since = -math.inf
            loc_all_silent = True
            for d in devs:
                self._update_silence(d, now, out)
                n_devices += 1
                loc_last = max(loc_last, d.last_seen)
                expect = d.last_seen + d.interval
                loc_expect = max(loc_expect, expect)
                if d.silent:
                    loc_silent_since = max(loc_silent_since, d.silent_since)
                else:
                    loc_all_silent = False
                    loc_alive_max = max(loc_alive_max, d.last_seen)
                if d.kind == WEARABLE:
                    self._check_not_worn(d, now, out)
            site_last = max(site_last, loc_last)
            site_alive_max = max(site_alive_max, loc_alive_max)
            site_all_silent = site_all_silent and loc_all_silent
            summaries.append(
                (loc, devs, loc_last, loc_alive_max, loc_all_silent, loc_silent_since, loc_expect)
            )
        if n_devices == 0:
            return
        n_locs = len(summaries)
        site_group = n_locs >= p.min_site_locations
        together_locs = sum(1 for s in summaries if s[6] + p.together_slack_s >= site_last)
        site_together = site_all_silent and site_group and together_locs >= p.min_site_locations

        # site level
        site_det = self._site_open.get(site)
        if site_det is not None and not site_all_silent:
            back = min(_back_time(d) for devs in locs.values() for d in devs if not d.silent)
            out.append(
                _resolved(
                    site_det,
                    back,
                    f"site {site} reachable again at {self._site_clock(back, site)} after "
                    f"{format_duration(back - (site_det.started or back))} without contact",
                )
            )
            del self._site_open[site]
            site_det = None
            # devices reconnect one by one after an outage: give each location (and each
            # still silent device) one deadline from the recovery before judging it alone
            for loc, devs in locs.items():
                self._loc_grace[(site, loc)] = back + min(d.deadline for d in devs)
                for d in devs:
                    if d.silent:
                        d.grace_until = back + d.deadline
        if site_det is None and site_together:
            site_det = self._raise_site(site, summaries, n_devices, site_last, now)
            out.append(site_det)

        # location level, then devices
        for loc, devs, loc_last, loc_alive_max, loc_all_silent, loc_since, _ in summaries:
            key = (site, loc)
            hub = self._hub_open.get(key)
            if hub is not None and not loc_all_silent:
                back = min(_back_time(d) for d in devs if not d.silent)
                out.append(
                    _resolved(
                        hub,
                        back,
                        f"devices at {loc} reporting again at {self._clock(back, devs[0])} after "
                        f"{format_duration(back - (hub.started or back))}",
                    )
                )
                del self._hub_open[key]
                hub = None
                for d in devs:
                    if d.silent:
                        d.grace_until = back + d.deadline
            hub_group = len(devs) >= p.min_hub_devices
            loc_together = (
                loc_all_silent
                and hub_group
                and sum(
                    1 for d in devs if d.last_seen + d.interval + p.together_slack_s >= loc_last
                )
                >= p.min_hub_devices
            )
            # could the site still explain this location's / a device's silence?
            site_may_explain = site_group and (not site_all_silent or site_together)
            if (
                hub is None
                and site_det is None
                and loc_together
                and now >= self._loc_grace.get(key, -math.inf)
            ):
                site_explains = site_may_explain and site_alive_max <= loc_last + slack
                if not site_explains or now - loc_since >= p.group_hold_s:
                    hub = self._raise_hub(site, loc, devs, loc_last, now)
                    out.append(hub)
            if hub is not None or site_det is not None:
                continue
            hub_may_explain = hub_group and (not loc_all_silent or loc_together)
            for d in devs:
                if not d.silent or d.offline_open is not None or now < d.grace_until:
                    continue
                hub_explains = hub_may_explain and loc_alive_max <= d.last_seen + slack
                site_explains = site_may_explain and site_alive_max <= d.last_seen + slack
                if (
                    not hub_explains and not site_explains
                ) or now - d.silent_since >= p.group_hold_s:
                    d.offline_open = self._raise_device_offline(d, now)
                    out.append(d.offline_open)

    def _update_silence(self, d: _Device, now: float, out: list[Detection]) -> None:
        explicit = d.offline_at >= d.last_seen
        clock = d.last_seen if d.last_seen >= d.resumed else d.resumed
        silent = explicit or now - clock > d.deadline
        if silent:
            if not d.silent:
                d.silent = True
                d.back_at = None
                d.silent_since = d.offline_at if explicit else clock + d.deadline
        elif d.silent:
            d.silent = False
            d.silent_since = math.inf
            if d.offline_open is not None:
                back = _back_time(d)
                self._resolve_device(
                    d,
                    DetectionKind.DEVICE_OFFLINE,
                    back,
                    f"{d.label} back online at {self._clock(back, d)} after "
                    f"{format_duration(back - (d.offline_open.started or back))} without contact",
                )
                out.extend(self._outbox)
                self._outbox.clear()

    def _check_not_worn(self, d: _Device, now: float, out: list[Detection]) -> None:
        if d.worn is not False or d.not_worn_open is not None or d.care_paused or d.silent:
            return
        p = self.params
        since = d.worn_changed
        if now - since < p.not_worn_s:
            return
        waking = window_overlap_s(since, now, d.waking[0], d.waking[1], d.utc_offset)
        if waking < p.not_worn_s:
            return
        d.not_worn_open = Detection(
            kind=DetectionKind.NOT_WORN,
            subject=d.id,
            time=now,
            reason=(
                f"{d.label} not worn since {self._clock(since, d)} "
                f"({format_duration(waking)} of waking time; alert after "
                f"{format_duration(p.not_worn_s)})"
            ),
            details=self._dev_details(d, not_worn_waking_s=round(waking), limit_s=p.not_worn_s),
            started=since,
        )
        out.append(d.not_worn_open)

    # ---------------------------------------------------------------- detections

    def _raise_device_offline(self, d: _Device, now: float) -> Detection:
        if d.offline_at >= d.last_seen:
            reason = (
                f"{d.label} at {d.location} reported offline at {self._clock(d.offline_at, d)} "
                f"(connection lost); last message {self._clock(d.last_seen, d)}"
            )
        else:
            reason = (
                f"{d.label} at {d.location} silent since {self._clock(d.last_seen, d)}: no "
                f"message for {format_duration(now - d.last_seen)} (expected every "
                f"{format_duration(d.interval)})"
            )
        return Detection(
            kind=DetectionKind.DEVICE_OFFLINE,
            subject=d.id,
            time=now,
            reason=reason,
            details=self._dev_details(
                d,
                last_seen=d.last_seen,
                explicit_offline=d.offline_at >= d.last_seen,
                deadline_s=d.deadline,
            ),
            started=d.last_seen,
        )

    def _raise_hub(
        self, site: str, loc: str, devs: list[_Device], loc_last: float, now: float
    ) -> Detection:
        kinds = ", ".join(sorted({KIND_LABELS.get(d.kind, d.kind) for d in devs}))
        det = Detection(
            kind=DetectionKind.HUB_OFFLINE,
            subject=loc,
            time=now,
            reason=(
                f"all {len(devs)} devices at {loc} silent since {self._clock(loc_last, devs[0])} "
                f"({kinds}): likely the home's hub, router or power supply"
            ),
            details={
                "site": site,
                "location": loc,
                "devices": len(devs),
                "device_ids": _ids(devs),
                "last_seen": loc_last,
            },
            started=loc_last,
        )
        self._hub_open[(site, loc)] = det
        return det

    def _raise_site(
        self,
        site: str,
        summaries: list[tuple[str, list[_Device], float, float, bool, float, float]],
        n_devices: int,
        site_last: float,
        now: float,
    ) -> Detection:
        det = Detection(
            kind=DetectionKind.SITE_OFFLINE,
            subject=site,
            time=now,
            reason=(
                f"all {n_devices} devices at {len(summaries)} locations of site {site} silent "
                f"since {self._site_clock(site_last, site)}: likely the site's network connection"
            ),
            details={
                "site": site,
                "devices": n_devices,
                "locations": len(summaries),
                "last_seen": site_last,
            },
            started=site_last,
        )
        self._site_open[site] = det
        return det

    def _resolve_device(
        self, d: _Device, kind: DetectionKind, t: float, reason: str, **extra: DetailValue
    ) -> None:
        if kind is DetectionKind.DEVICE_OFFLINE:
            raised, d.offline_open = d.offline_open, None
        elif kind is DetectionKind.LOW_BATTERY:
            raised, d.battery_open = d.battery_open, None
        else:
            raised, d.not_worn_open = d.not_worn_open, None
        if raised is not None:
            self._outbox.append(_resolved(raised, t, reason, **extra))

    def _dev_details(self, d: _Device, **extra: DetailValue) -> dict[str, DetailValue]:
        details: dict[str, DetailValue] = {
            "device_kind": d.kind,
            "site": d.site,
            "location": d.location,
        }
        details.update(extra)
        return details

    def _clock(self, t: float, d: _Device) -> str:
        """``t`` as local time of day at ``d``'s site."""
        return format_time(t, d.utc_offset)

    def _site_clock(self, t: float, site: str) -> str:
        """``t`` as local time of day at ``site`` (every device of a site has its offset)."""
        for devs in self._sites.get(site, {}).values():
            if devs:
                return self._clock(t, devs[0])
        return format_time(t, self.params.utc_offset_s)


def _back_time(d: _Device) -> float:
    return d.back_at if d.back_at is not None else d.last_seen


def _ids(devs: list[_Device], limit: int = 20) -> str:
    ids = [d.id for d in devs[:limit]]
    return ",".join(ids) + (",..." if len(devs) > limit else "")


def _resolved(raised: Detection, t: float, reason: str, **extra: DetailValue) -> Detection:
    details = dict(raised.details)
    details.update(extra)
    return Detection(
        kind=raised.kind,
        subject=raised.subject,
        time=t,
        reason=reason,
        details=details,
        started=raised.started,
        resolved=True,
    )
