-- Cell coverage (issue 15 §5, gateway.cell_coverage): which cell serves which site, renewed by
-- each cell's active gateway. A site with devices that no live cell claims is heard by nobody
-- (its devices keep retrying unacknowledged events); a site claimed by two live cells would be
-- raised twice. Both show as gauges and alert (deploy/prometheus/alerts.yml).
-- Grants come from the default privileges set by migration 0014.

CREATE TABLE cell_sites (
    cell_id  text NOT NULL,
    site_id  text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cell_id, site_id)
);
