"""The Prometheus alert rules (deploy/prometheus/alerts.yml) pass ``promtool check rules`` and
their unit tests (``promtool test rules``, one file per alert); compose loads them, and the
Kubernetes base ships the same groups as a PrometheusRule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_k8s.test_manifests import OVERLAYS, one, render
from tests.test_deploy import COMPOSE_FILE, EXPORTED_METRIC_FAMILIES, PROMETHEUS_FILE

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
METRIC = re.compile(r"\bgateway_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")


def alerts() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
        for rule in group["rules"]
    ]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtool_check():
    done = promtool("check", "rules", str(RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_every_alert_has_a_passing_unit_test_of_its_own():
    tested: dict[str, Path] = {}
    for path in sorted(RULE_TESTS.glob("*.test.yml")):
        document = yaml.safe_load(path.read_text())
        names = {
            case["alertname"] for test in document["tests"] for case in test["alert_rule_test"]
        }
        assert len(names) == 1, f"{path.name} tests {names}: one alert per file"
        cases = [case for test in document["tests"] for case in test["alert_rule_test"]]
        assert any(case["exp_alerts"] for case in cases), f"{path.name}: never fires"
        assert any(not case["exp_alerts"] for case in cases), f"{path.name}: never quiet"
        tested[names.pop()] = path
    assert sorted(tested) == sorted(rule["alert"] for rule in alerts())
    done = promtool("test", "rules", *map(str, tested.values()))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_read_metrics_the_gateway_exports():
    known = set(EXPORTED_METRIC_FAMILIES)  # the ledger's included
    for rule in alerts():
        for name in METRIC.findall(rule["expr"]):
            family = name.removesuffix(
                next((s for s in HISTOGRAM_SUFFIXES if name.endswith(s)), "")
            )
            assert name in known or family in known, (rule["alert"], name)


def test_the_cut_streams_alert_reads_the_cuts_of_each_model():
    """Over the model's own streams (tests/e2e/test_midstream_failures.py: each cut and idle
    timeout after the first byte counts in gateway_streams_cut_total under its model)."""
    (rule,) = [rule for rule in alerts() if rule["alert"] == "GatewayStreamsCut"]
    assert "rate(gateway_streams_cut_total[5m])" in rule["expr"]
    assert rule["expr"].count("sum by (model)") == 2


def test_compose_loads_the_rules():
    assert "alerts.yml" in yaml.safe_load(PROMETHEUS_FILE.read_text())["rule_files"]
    prometheus = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["prometheus"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    done = promtool("check", "config", str(PROMETHEUS_FILE))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_ships_the_same_rules_as_a_prometheus_rule(overlay):
    rule = one(render(overlay), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    assert yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"] == rule["spec"]
