"""Cell coverage (gateway.cell_coverage) on a real database: a site with devices that no live
cell serves, or that two cells serve, is counted, logged once per change and alerted."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from gateway.cell_coverage import Coverage, CoverageWatch
from gateway.settings.cell import CellSettings
from tests.support import Broker, Database, gateway_settings, make_site

pytestmark = pytest.mark.integration


def test_sites_served_by_no_cell_or_two_cells_are_found(
    db: Database, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    for site in ("site-a", "site-b", "site-c"):
        make_site(db, broker, site_id=site, wearables=False)
    with db.connect() as conn:  # a site without active devices needs no cell
        conn.execute(
            "INSERT INTO sites (site_id, name, kind) VALUES ('site-empty', 'E', 'nursing_home')"
        )
    registry = CollectorRegistry()
    settings = gateway_settings(db, broker)
    a = CoverageWatch(settings.database, CellSettings(id="a", sites=("site-a",)), registry)
    b = CoverageWatch(
        settings.database, CellSettings(id="b", sites=("site-b",)), CollectorRegistry()
    )

    caplog.set_level(logging.INFO, logger="gateway.cell_coverage")
    assert a.check_once() == Coverage(unserved=("site-b", "site-c"), double=())
    assert registry.get_sample_value("safehome_cell_unserved_sites") == 2.0
    a.check_once()  # the same state: logged once, not on every check
    assert caplog.text.count("sites served by no cell") == 1

    assert b.check_once() == Coverage(unserved=("site-c",), double=())
    # cell c is configured with site-b too
    c = CoverageWatch(
        settings.database, CellSettings(id="c", sites=("site-b", "site-c")), CollectorRegistry()
    )
    assert c.check_once() == Coverage(unserved=(), double=("site-b",))
    assert a.check_once() == Coverage(unserved=(), double=("site-b",))
    assert registry.get_sample_value("safehome_cell_unserved_sites") == 0.0
    assert registry.get_sample_value("safehome_cell_double_served_sites") == 1.0
    assert "every site with devices is served by a cell" in caplog.text

    # cell c's gateways stopped (no renewal for three intervals); cell b drops site-b from
    # its file: site-b and site-c are heard by nobody
    with db.connect() as conn:
        conn.execute(
            "UPDATE cell_sites SET seen_at = now() - interval '1 hour' WHERE cell_id = 'c'"
        )
    b2 = CoverageWatch(
        settings.database, CellSettings(id="b", sites=("site-x",)), CollectorRegistry()
    )
    b2.check_once()
    assert a.check_once() == Coverage(unserved=("site-b", "site-c"), double=())
    assert registry.get_sample_value("safehome_cell_unserved_sites") == 2.0
    assert db.rows("SELECT site_id FROM cell_sites WHERE cell_id = 'b'") == [("site-x",)]


def test_a_gateway_without_a_cell_exports_zero_and_checks_nothing(
    db: Database, broker: Broker
) -> None:
    settings = gateway_settings(db, broker)
    assert settings.cell.enabled is False
    registry = CollectorRegistry()
    watch = CoverageWatch(settings.database, settings.cell, registry)
    assert registry.get_sample_value("safehome_cell_unserved_sites") == 0.0
    assert registry.get_sample_value("safehome_cell_double_served_sites") == 0.0
    with pytest.raises(ValueError, match="needs a cell"):
        watch.check_once()
