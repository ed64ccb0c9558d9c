"""gateway.cells: the [cell] settings and what a cell's gateway derives from them."""

from __future__ import annotations

import pytest

from devices.protocol import uplink_filters
from gateway.cells import CellSettings, apply_cell, cell_lock_key, subscription_filters
from gateway.settings import SettingsError, load_settings


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
