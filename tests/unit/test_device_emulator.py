"""The device emulator's pure parts: the configuration it accepts, the kind it plays, and
the signals of its actions (the shaking and the put-on wearable); the MQTT side is tested
end to end in tests/e2e/test_device_emulator.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from devices.emulator import EmulatorConfig, EmulatorError, infer_kind
from devices.protocol import Channel, DeviceKind
from devices.signals import DailyRoutine, ResidentModel
from devices.virtual import WearableDevice, make_virtual_device


def _config(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "device_id": "wr-SN5", "site_id": "maple",
        "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": False, "username": "wr-SN5",
                 "password": "pw", "client_id": "wr-SN5", "topic_prefix": "shg/v1/maple/wr-SN5"},
        "protocol": 1, "heartbeat_interval_s": 300,
    }  # fmt: skip
    for key, value in changes.items():
        if key.startswith("mqtt_"):
            obj["mqtt"][key[5:]] = value
        else:
            obj[key] = value
    return obj


def test_the_printed_configuration_is_accepted() -> None:
    cfg = EmulatorConfig.from_json(_config())
    assert (cfg.device_id, cfg.port, cfg.tls, cfg.heartbeat_s) == ("wr-SN5", 1883, False, 300.0)
    assert cfg.topic(Channel.EVENT) == "shg/v1/maple/wr-SN5/event"
    assert "pw" not in repr(cfg)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"mqtt": None}, "no 'mqtt' section"),
        ({"mqtt_password": ""}, "'mqtt.password' missing"),
        ({"mqtt_port": "1883"}, "'mqtt.port'"),
        ({"mqtt_tls": "no"}, "'mqtt.tls'"),
        ({"mqtt_topic_prefix": "shg/v1/other/wr-SN5"}, "topic_prefix"),
        ({"device_id": "wr SN5"}, "'device_id'"),
    ],
)
def test_a_bad_configuration_is_refused_with_a_hint(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(EmulatorError) as err:
        EmulatorConfig.from_json(_config(**changes))
    assert detail in err.value.message and err.value.code == 2
    assert err.value.hint is not None and "--config-out" in err.value.hint


def test_the_kind_comes_from_the_option_the_id_or_the_actions() -> None:
    cfg = EmulatorConfig.from_json(_config())
    assert infer_kind(cfg, ["press"], None) is DeviceKind.WEARABLE  # the gateway's wr- id
    assert infer_kind(cfg, [], "button") is DeviceKind.BUTTON
    custom = EmulatorConfig.from_json(
        _config(device_id="dev1", mqtt_username="dev1", mqtt_topic_prefix="shg/v1/maple/dev1")
    )
    assert infer_kind(custom, ["lie-down"], None) is DeviceKind.BED_SENSOR
    with pytest.raises(EmulatorError, match="what kind"):
        infer_kind(custom, ["press"], None)  # a button or a wearable's SOS key


def _wearable(now: float) -> WearableDevice:
    resident = ResidentModel(DailyRoutine())
    resident.override(now - 1.0, None, in_bed=False)
    dev = make_virtual_device(DeviceKind.WEARABLE, "wr-SN5", seed=7, resident=resident, now=now)
    assert isinstance(dev, WearableDevice)
    return dev


def _peaks(dev: WearableDevice, start: float, seconds: int) -> list[float]:
    peaks = []
    for i in range(1, seconds + 1):
        for out in dev.tick(start + i):
            if out.type == "accel":
                msg = json.loads(out.payload)
                xyz = np.array([msg["x"], msg["y"], msg["z"]])
                peaks.append(float(np.sqrt((xyz * xyz).sum(axis=0)).max()))
    return peaks


@pytest.mark.parametrize("seed", range(5))
def test_a_shake_peaks_above_the_acceptance_threshold_and_stays_in_range(seed: int) -> None:
    now = 1_767_225_600.0 + seed
    dev = _wearable(now)
    dev.rng.seed(seed)
    quiet = _peaks(dev, now, 3)
    dev.shake(now + 3, seconds=2.0, peak_g=3.0)
    shaken = _peaks(dev, now + 3, 3)
    assert max(quiet) < 1.5  # standing, sitting or walking
    assert max(shaken) >= 2.5 and max(shaken) <= 16.0 * np.sqrt(3)
    after = _peaks(dev, now + 6, 2)
    assert max(after) < 1.5  # the shaking stopped


def test_put_on_raises_worn_and_a_heart_rate_follows_take_off_stops_it() -> None:
    now = 1_767_225_600.0
    dev = _wearable(now)
    dev.tick(now)
    off = dev.take_off(now + 0.5)
    assert off.type == "not_worn" and off.channel is Channel.EVENT
    assert "hr" not in {o.type for t in range(1, 40) for o in dev.tick(now + t)}
    on = dev.put_on(now + 40.5)
    assert on.type == "worn" and b'"worn":true' in dev.heartbeat_now(now + 40.5).payload
    assert "hr" in {o.type for o in dev.tick(now + 41)}


def test_a_resident_gets_up_off_the_floor() -> None:
    resident = ResidentModel(DailyRoutine())
    resident.fall(100.0, None)
    assert resident.on_floor(150.0)
    resident.get_up(160.0)
    assert resident.on_floor(159.0) and not resident.on_floor(160.0)
    resident.get_up(200.0)  # not on the floor: nothing changes
    assert resident.on_floor_until == 160.0
