"""Every metric and label the alert rules (deploy/prometheus/alerts.yml), their promtool test
cases (deploy/prometheus/tests/*.yml) and the Grafana dashboard (deploy/grafana/safehome.json)
name is one the gateway registers: a rule on a metric or label nobody exports never fires
(a silent alert), a panel on one stays empty.

The gateway's metric modules are built here as the runtime builds them, on one registry, with
nothing started (no database, no broker): gateway.metrics, the runtime's failover gauge,
analysis, alarm recovery, cell coverage, the MQTT client's counters, the care-path collector
(described, never collected: that would read the database) and the broker's ``$SYS`` counters.
The integration twin scrapes a running gateway's /metrics
(tests/integration/test_carepath_metrics.py). ``up`` is Prometheus' own and ``node_*`` the node
exporter's; ``job`` and ``instance`` are Prometheus' target labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from gateway.analysis.metrics import AnalysisMetrics
from gateway.brokerstats import SYS_TOPICS
from gateway.carepath_metrics import CarePathCollector
from gateway.cell_coverage import CoverageWatch
from gateway.escalation.recovery import AlarmRecovery
from gateway.metrics import ClientStatsCollector
from gateway.mqttoutbox import ClientStats
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.unit.test_deploy_monitoring import DASHBOARD, RULE_TESTS, alert_rules

EXTERNAL = re.compile(r"^(up|node_[a-z0-9_]+)$")
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan", "Inf", "NaN",
}  # fmt: skip
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
SELECTOR = re.compile(rf"({NAME})?\s*\{{([^}}]*)\}}")
MATCHER_LABEL = re.compile(rf"({NAME})\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
BARE_NAME = re.compile(rf"(?<![A-Za-z0-9_:.]){NAME}(?![A-Za-z0-9_:])(?!\s*\()")


@dataclass(frozen=True)
class Reference:
    """One metric an expression names and the labels it matches or groups on."""

    source: str
    metric: str
    labels: frozenset[str]


def references(source: str, expr: str) -> list[Reference]:
    """The metrics of one PromQL expression (functions, keywords and durations left out);
    grouping labels are held against every metric of the expression."""
    matchers: dict[str, set[str]] = {}
    for name, body in SELECTOR.findall(expr):
        if name and name not in PROMQL_WORDS:
            matchers.setdefault(name, set()).update(MATCHER_LABEL.findall(body))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings hold values, not names
    grouped = {g.strip() for body in GROUPING.findall(bare) for g in body.split(",")} - {""}
    bare = GROUPING.sub(" ", SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", bare))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # range and subquery durations
    names = {n for n in BARE_NAME.findall(bare) if n not in PROMQL_WORDS} | set(matchers)
    return [
        Reference(source, n, frozenset(matchers.get(n, set()) | grouped)) for n in sorted(names)
    ]


def deploy_references() -> list[Reference]:
    refs = [r for rule in alert_rules() for r in references(rule["alert"], str(rule["expr"]))]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            refs += references(f"panel {panel['id']}", target["expr"])
    for path in sorted(RULE_TESTS.glob("*.yml")):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for series in case.get("input_series", []):
                refs += references(f"{path.name} input series", series["series"])
    return refs


def _never_connect() -> AbstractContextManager[psycopg.Connection[Any]]:
    raise AssertionError("a unit test never reads the database")


@dataclass
class Exported:
    """Sample names and label names of every family the gateway registers."""

    labels: dict[str, set[str]]

    def add(self, family: Metric, declared: tuple[str, ...] = ()) -> None:
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_count", "_sum"],
            "summary": ["_count", "_sum"],
        }.get(family.type, [])
        labels = set(declared) | set(getattr(family, "_labelnames", ()))
        labels |= {k for s in family.samples for k in s.labels}
        if family.type == "histogram":
            labels.add("le")
        for name in [family.name, *(family.name + s for s in suffixes)]:
            self.labels.setdefault(name, set()).update(labels)


def _wrappers(*holders: object) -> Iterator[MetricWrapperBase]:
    for holder in holders:
        yield from (v for v in vars(holder).values() if isinstance(v, MetricWrapperBase))


def gateway_metrics() -> Exported:
    runtime = Runtime(Settings(), api=False)  # Metrics() and the failover gauge; not started
    s, registry = runtime.settings, runtime.metrics.registry
    analysis = AnalysisMetrics(registry)
    recovery = AlarmRecovery(s.database.conninfo(), s.alarms, s.analysis, registry=registry)
    coverage = CoverageWatch(s.database, s.cell, registry)
    registry.register(ClientStatsCollector(ClientStats))
    carepath = CarePathCollector(_never_connect, cache_s=60, gap_timeout_s=60)
    registry.register(carepath)  # describes it: no name twice on one registry
    registry.unregister(carepath)  # collecting it would read the database
    out = Exported({})
    labelled = {
        w._name: tuple(w._labelnames)
        for w in _wrappers(runtime, runtime.metrics, analysis, recovery, coverage)
    }
    for family in registry.collect():
        out.add(family, labelled.get(family.name, ()))
    for family in carepath.describe():
        out.add(family)
    for name, _, counter in SYS_TOPICS.values():  # exported once the broker publishes them
        out.labels.setdefault(name + ("_total" if counter else ""), set())
    return out


def test_the_extractor_finds_metrics_labels_and_nothing_else() -> None:
    refs = references(
        "x",
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="g", k=~"x|y"}[5m])))'
        ' / on (instance) b offset 5m > bool 2 and absent(up{job="g"}) unless c_total',
    )
    assert {r.metric: set(r.labels) for r in refs} == {
        "a_bucket": {"le", "instance", "job", "k"},
        "b": {"le", "instance"},
        "up": {"le", "instance", "job"},
        "c_total": {"le", "instance"},
    }


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    return gateway_metrics().labels


def test_the_gateway_list_holds_the_names_as_scraped(exported: dict[str, set[str]]) -> None:
    assert exported["safehome_ingest_dead_letters_total"] == {"reason"}
    assert exported["safehome_incident_time_to_acknowledge_seconds_bucket"] == {"priority", "le"}
    assert exported["safehome_notification_attempts_total"] == {"channel", "result"}
    assert "safehome_failover_active" in exported and "process_cpu_seconds_total" in exported
    assert "safehome_mqtt_client_connection_losses_total" in exported
    assert "safehome_broker_publish_messages_dropped_total" in exported


@pytest.mark.parametrize("ref", deploy_references(), ids=lambda r: f"{r.source}:{r.metric}")
def test_every_metric_and_label_of_the_rules_and_dashboard_is_exported(
    ref: Reference, exported: dict[str, set[str]]
) -> None:
    if EXTERNAL.match(ref.metric):
        return
    assert ref.metric in exported, f"{ref.source}: {ref.metric} is not exported by the gateway"
    missing = set(ref.labels) - TARGET_LABELS - exported[ref.metric]
    assert not missing, f"{ref.source}: {ref.metric} has no label {sorted(missing)}"


def test_care_path_counters_are_taken_once_not_once_per_gateway() -> None:
    """Every gateway reading the database (both of a failover pair) exports the same care-path
    counts: summed over instances, each alarm would count twice. Quantiles and ratios of
    them are unaffected; counts must take the max over instances."""
    carepath = CarePathCollector(_never_connect, cache_s=60, gap_timeout_s=60)
    counters = {f.name + "_total" for f in carepath.describe() if f.type == "counter"}
    exprs = [(r["alert"], str(r["expr"])) for r in alert_rules()]
    exprs += [
        (f"panel {p['id']}", t["expr"])
        for p in json.loads(DASHBOARD.read_text())["panels"]
        for t in p.get("targets", [])
    ]
    checked = 0
    for source, expr in exprs:
        if any(re.search(rf"\b{c}\b", expr) for c in counters):
            checked += 1
            assert expr.lstrip().startswith("max"), f"{source}: {expr}"
    assert checked >= 5
