"""deploy/prometheus/alerts.yml and deploy/grafana/safehome.json, checked by Prometheus' own
tool (promtool, Debian package ``prometheus``): rules valid, each rule fires on the metric it
watches (promtool unit tests), every dashboard query valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
DASHBOARD = ROOT / "deploy" / "grafana" / "safehome.json"
METRIC = re.compile(r"\b((?:safehome|process|node)_[a-z0-9_]+|up)\b(?!\s*\()")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool missing: run scripts/setup.sh (Debian package prometheus)"
    return subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def referenced_metrics() -> set[str]:
    """Every metric name the alert rules and the dashboard query (functions excluded)."""
    exprs = [str(r["expr"]) for r in alert_rules()] + dashboard_exprs()
    names: set[str] = set()
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers hold label names and values
        bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)  # ... and so do groupings
        names |= set(METRIC.findall(bare))
    return names


def test_rules_are_valid() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_example_prometheus_configuration_is_valid() -> None:
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    done = promtool("check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert jobs == {"safehome-gateway", "node"}  # the jobs the rules name


def test_each_rule_fires_on_the_metric_it_watches() -> None:
    files = sorted(RULE_TESTS.glob("*.yml"))
    done = promtool("test", "rules", *map(str, files), cwd=RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    fired: set[str] = set()
    for f in files:
        for case in yaml.safe_load(f.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                if t.get("exp_alerts"):
                    fired.add(t["alertname"])
    assert {r["alert"] for r in alert_rules()} == fired, "every rule needs a firing test case"


def test_promtool_would_catch_a_rule_that_does_not_fire(tmp_path: Path) -> None:
    """The unit tests can fail: a threshold raised past the test data breaks them."""
    broken = ALERTS.read_text().replace(
        'technical="false"}) > 180', 'technical="false"}) > 1800', 1
    )
    (tmp_path / "alerts.yml").write_text(broken)
    tests = tmp_path / "tests"
    shutil.copytree(RULE_TESTS, tests)
    done = promtool("test", "rules", str(tests / "alerts_test.yml"), cwd=tests)
    assert done.returncode != 0
    assert "SafehomeAlarmNotAcknowledgedCritical" in done.stdout + done.stderr


def test_every_rule_has_severity_and_bilingual_summary() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        summary = rule["annotations"]["summary"]
        assert re.search(r"[\u4e00-\u9fff]", summary) and " / " in summary, rule["alert"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] == "safehome-care-path"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(dashboard_exprs())
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_covers_the_care_path() -> None:
    names = referenced_metrics()
    for needed in [
        "safehome_incident_events_total",
        "safehome_incident_time_to_acknowledge_seconds_bucket",
        "safehome_incidents_unacknowledged_oldest_age_seconds",
        "safehome_escalation_tiers_reached_total",
        "safehome_staff_pages_total",
        "safehome_notification_attempts_total",
        "safehome_notification_outbox_depth",
        "safehome_ingest_messages_total",
        "safehome_ingest_dead_letters_total",
        "safehome_broker_publish_messages_dropped_total",
        "safehome_analysis_lag_seconds_bucket",
    ]:
        assert needed in names, needed
    text = DASHBOARD.read_text()
    assert 'le=\\"60.0\\"' in text and 'le=\\"180.0\\"' in text  # the SLA targets
