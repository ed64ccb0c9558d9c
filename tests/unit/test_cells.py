"""gateway.cells: the [cell] settings and what a cell's gateway derives from them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from analytics.types import DetectionKind
from devices.protocol import DeviceKind, downlink_filters, site_filter, uplink_filters
from gateway.analysis import AnalysisRunner, MemoryStore
from gateway.analysis.records import RegistrySnapshot, ResidentInfo
from gateway.brokerauth import (
    BrokerAuthError,
    DeviceAccount,
    ServiceAccount,
    render_acl,
    render_password_file,
)
from gateway.cells import (
    CellSettings,
    apply_cell,
    cell_accounts,
    cell_lock_key,
    cell_username,
    served_sites,
    subscription_filters,
)
from gateway.cellstore import scoped
from gateway.registry import DeviceInfo
from gateway.replay import VirtualClock
from gateway.settings import AnalysisSettings, SettingsError, load_settings
from tests.unit.test_analysis_runner import OFF, SHORT_HEARTBEATS, T_DAY, Stream


def test_no_cell_is_todays_gateway() -> None:
    settings = load_settings(environ={})
    assert not settings.cell.enabled
    assert apply_cell(settings) is settings
    assert subscription_filters(settings.cell, "shg") == ["shg/v1/+/+/+"]


def test_a_cell_subscribes_to_its_sites_uplinks_only() -> None:
    env = {"SAFEHOME_CELL__ID": "east", "SAFEHOME_CELL__SITES": "site-a, site-b"}
    cell = load_settings(environ=env).cell
    assert cell.sites == ("site-a", "site-b")
    assert subscription_filters(cell, "shg") == [
        *uplink_filters("shg", "site-a"),
        *uplink_filters("shg", "site-b"),
    ]


def test_a_cell_names_its_session_connections_and_lease() -> None:
    env = {"SAFEHOME_CELL__ID": "east", "SAFEHOME_CELL__SITES": "site-a"}
    base = load_settings(environ=env)
    east = apply_cell(base)
    west = apply_cell(base.model_copy(update={"cell": CellSettings(id="west", sites=("s",))}))
    assert east.mqtt.client_id == f"{base.mqtt.client_id}-east"
    assert east.database.application_name == f"{base.database.application_name}@east"
    keys = {base.failover.lock_key, east.failover.lock_key, west.failover.lock_key}
    assert len(keys) == 3 and all(-(2**63) <= k < 2**63 for k in keys)
    assert east.failover.lock_key == cell_lock_key(base.failover.lock_key, "east")
    # An explicit lock key is the operator's choice: kept.
    env["SAFEHOME_FAILOVER__LOCK_KEY"] = "42"
    assert apply_cell(load_settings(environ=env)).failover.lock_key == 42


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SAFEHOME_CELL__ID": "East"}, "cell.id"),
        ({"SAFEHOME_CELL__ID": "x" * 25, "SAFEHOME_CELL__SITES": "a"}, "cell.id"),
        ({"SAFEHOME_CELL__ID": "east"}, "needs at least one site"),
        ({"SAFEHOME_CELL__SITES": "a"}, "needs a cell.id"),
        ({"SAFEHOME_CELL__ID": "east", "SAFEHOME_CELL__SITES": "a,a/b"}, "invalid site ids"),
        ({"SAFEHOME_CELL__ID": "east", "SAFEHOME_CELL__SITES": "a,a"}, "listed twice"),
    ],
)
def test_bad_cell_settings_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings(environ=env)


def _two_sites() -> RegistrySnapshot:
    """Two sites, one home each: bed sensor, wearable and button, none ever heard from."""
    devices: dict[str, DeviceInfo] = {}
    residents: dict[str, ResidentInfo] = {}
    for site in ("site-a", "site-b"):
        res = f"{site}-r1"
        residents[res] = ResidentInfo(res, site)
        for prefix, kind in (
            ("bs", DeviceKind.BED_SENSOR),
            ("wr", DeviceKind.WEARABLE),
            ("bt", DeviceKind.BUTTON),
        ):
            dev = f"{site}-{prefix}1"
            devices[dev] = DeviceInfo(dev, site, kind, f"{site}-l1", f"{site}-b1", res, None)
    return RegistrySnapshot(devices, residents, {"site-a": OFF, "site-b": OFF})


# A whole site silent is one site_offline (gateway.analysis health), not one per device.
_OFFLINE = {DetectionKind.DEVICE_OFFLINE, DetectionKind.HUB_OFFLINE, DetectionKind.SITE_OFFLINE}


@pytest.mark.parametrize(("cell", "flagged"), [
    (CellSettings(), {"site-a", "site-b"}),
    (CellSettings(id="cell-b", sites=("site-b",)), {"site-b"}),
])  # fmt: skip
def test_a_cells_analysis_knows_only_its_own_sites(cell: CellSettings, flagged: set[str]) -> None:
    """Every device of both sites is heard from, then falls silent: without a cell every
    site's devices go offline; a cell's runner (through scoped) knows only its own sites'
    devices, so it flags only those, whatever else reaches it."""
    registry = _two_sites()
    store = MemoryStore(registry)
    stream = Stream(registry)
    heard = sorted(
        (stream.heartbeat(dev, T_DAY + t) for dev in registry.devices for t in range(0, 20, 2)),
        key=lambda m: m.received_at,
    )
    clock = VirtualClock(T_DAY)
    tune = {"check_interval_s": 1.0} | SHORT_HEARTBEATS
    runner = AnalysisRunner(
        AnalysisSettings.model_validate(tune), scoped(store, cell),
        clock=clock, metrics_registry=CollectorRegistry(),
    )  # fmt: skip
    runner.rebuild()
    while clock.now < T_DAY + 300:
        while heard and heard[0].received_at <= clock.now:
            runner.feed([heard.pop(0)])
        runner.advance()
        clock.now += 1.0
    runner.flush(force=True)
    offline = [r for r in store.detections if r.kind in _OFFLINE]
    assert {r.site_id for r in offline} == flagged
    assert {r.site_id for r in store.detections} == flagged


# -- a broker shared by cells: per-cell gateway accounts (broker.cells) ------------------

_CELLS = '[{"id": "east", "sites": ["site-a"]}, {"id": "west", "sites": "site-b,site-c"}]'


def test_a_shared_broker_has_one_narrowed_gateway_account_per_cell() -> None:
    settings = load_settings(environ={"SAFEHOME_BROKER__CELLS": _CELLS})
    assert [(c.id, c.sites) for c in settings.broker.cells] == [
        ("east", ("site-a",)),
        ("west", ("site-b", "site-c")),
    ]
    gateway = ServiceAccount("gateway", "h")
    cells = cell_accounts(settings.broker.cells, "gateway", "h")
    assert [(a.username, a.sites) for a in cells] == [
        (cell_username("gateway", "east"), ("site-a",)),
        ("gateway-west", ("site-b", "site-c")),
    ]
    acl = render_acl("shg", gateway, [], cells).split("\n\n")
    east = next(block for block in acl if block.startswith("user gateway-east\n"))
    assert east.splitlines()[1:] == [
        f"topic read {site_filter('shg', 'site-a')}",
        *(f"topic write {f}" for f in downlink_filters("shg", "site-a")),
        "topic read $SYS/#",
    ]
    assert "user gateway-east-sys\ntopic read $SYS/#" in acl
    west = next(block for block in acl if block.startswith("user gateway-west\n"))
    assert "topic read shg/v1/site-b/#" in west and "topic read shg/v1/site-c/#" in west
    assert "site-a" not in west and "shg/v1/#" not in west and "/+/+/" not in west
    # Today's gateway account is unchanged; the cells' accounts and monitors have passwords.
    assert acl[0].splitlines()[1:4] == ["user gateway", "topic read shg/v1/#",
                                        "topic write shg/v1/+/+/ack"]  # fmt: skip
    users = [line.split(":")[0] for line in render_password_file(gateway, [], cells).split()]
    assert users == ["gateway", "gateway-east", "gateway-west", "gateway-sys",
                     "gateway-east-sys", "gateway-west-sys"]  # fmt: skip
    with pytest.raises(BrokerAuthError, match="reserved"):
        render_password_file(gateway, [DeviceAccount("gateway-east-sys", "s", "h")], cells)


def test_without_broker_cells_the_broker_files_are_todays() -> None:
    settings = load_settings(environ={})
    assert settings.broker.cells == ()
    gateway = ServiceAccount("gateway", "h")
    devices = [DeviceAccount("dev-1", "site-a", "h")]
    cells = cell_accounts(settings.broker.cells, "gateway", "h")
    assert cells == []
    assert render_acl("shg", gateway, devices, cells) == render_acl("shg", gateway, devices)
    assert downlink_filters("shg") == downlink_filters("shg", "+")


def test_a_cell_listed_on_its_broker_connects_with_its_own_account() -> None:
    env = {"SAFEHOME_BROKER__CELLS": _CELLS, "SAFEHOME_CELL__ID": "west",
           "SAFEHOME_CELL__SITES": "site-c,site-b"}  # fmt: skip
    west = apply_cell(load_settings(environ=env))
    assert west.mqtt.username == "gateway-west"
    # A cell not listed (its own broker) keeps the configured account.
    env["SAFEHOME_BROKER__CELLS"] = '[{"id": "east", "sites": ["site-a"]}]'
    assert apply_cell(load_settings(environ=env)).mqtt.username == "gateway"
    env["SAFEHOME_BROKER__CELLS"] = '[{"id": "west", "sites": ["site-b"]}]'
    with pytest.raises(SettingsError, match=r"differ from its broker\.cells entry"):
        apply_cell(load_settings(environ=env))


@pytest.mark.parametrize(
    ("cells", "problem"),
    [
        ('[{"id": "", "sites": []}]', "needs an id"),
        ('[{"id": "a", "sites": ["s1"]}, {"id": "a", "sites": ["s2"]}]', "listed twice"),
        ('[{"id": "a", "sites": ["s1"]}, {"id": "b", "sites": ["s1"]}]', "more than one cell"),
        ('[{"id": "a"}]', "at least one site"),
        ("not json", "not a JSON list"),
    ],
)
def test_bad_broker_cells_are_refused(cells: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings(environ={"SAFEHOME_BROKER__CELLS": cells})


def test_the_database_wide_workers_filter_by_the_cells_sites() -> None:
    assert served_sites(CellSettings()) is None
    assert served_sites(CellSettings(id="east", sites=("site-a", "site-b"))) == (
        "site-a",
        "site-b",
    )
