"""The Kubernetes manifests (deploy/k8s), rendered and validated offline.

Each overlay is rendered with ``kubectl kustomize`` (Debian's kubectl has kustomize built in)
and every object is validated by ``kubernetes-validate`` against the schema of a current
Kubernetes release, bundled in the package (no network). The ServiceMonitor and the
PrometheusRule are CRDs of the Prometheus Operator that no Kubernetes schema knows: they are the
kinds skipped, and checked by hand (the rules by promtool in tests/test_alert_rules.py). Then
the manifests are checked against the code: probe paths, ports, the env names the gateway reads,
the grace period against ``shutdown_grace_s``, and the HPA's metric.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.load import load_config
from gateway.http.api import ops
from tests.test_deploy import EXPORTED_METRIC_FAMILIES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "ha")
KUBERNETES_VERSION = "1.37.0"
# no schema in Kubernetes' own
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET")

kubectl = shutil.which("kubectl")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
pytestmark = pytest.mark.skipif(kubectl is None, reason="kubectl is not installed (tests/setup.sh)")


def render(overlay: str) -> list[dict[str, Any]]:
    assert kubectl is not None
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def one(docs: list[dict[str, Any]], kind: str, name: str = "llm-gateway") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "gateway")


def test_every_object_is_valid_against_the_kubernetes_schema(rendered):
    skipped = set()
    for doc in rendered:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            skipped.add((doc["apiVersion"], doc["kind"]))
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert skipped == CRDS  # the ServiceMonitor and rules are there, and only CRDs were skipped


def test_probes_and_ports_match_the_gateway(rendered):
    paths = {route.path for route in ops.routes()}
    container = gateway_container(rendered)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    args = container["args"]
    port = int(args[args.index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    service = one(rendered, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    monitor = one(rendered, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics" in paths


def test_selectors_pick_the_gateway_pods(rendered):
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [
        one(rendered, "Deployment")["spec"]["selector"]["matchLabels"],
        one(rendered, "Service")["spec"]["selector"],
        one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()


def _sources() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))


def test_every_env_name_is_one_the_gateway_reads(rendered):
    container = gateway_container(rendered)
    config = yaml.safe_load((K8S / "base" / "config" / "routes.yaml").read_text())
    key_envs = {u.get("api_key_env") for u in config["upstreams"].values()}
    sources = _sources()
    for entry in container["env"]:
        name = entry["name"]
        assert f'"{name}"' in sources or name in key_envs, name
        if any(word in name for word in SECRET_WORDS) and name != "REDIS_SENTINELS":
            assert "value" not in entry, f"{name} must come from a Secret"
            assert entry["valueFrom"]["secretKeyRef"]["name"] == "llm-gateway-secrets"
    names = {entry["name"] for entry in container["env"]}
    assert {key for key in key_envs if key} <= names  # every upstream key can be given


def test_the_store_is_set_by_each_overlay():
    dev = {e["name"]: e.get("value") for e in gateway_container(render("dev"))["env"]}
    assert dev["REDIS_URL"].startswith("redis://")
    ha = {e["name"]: e.get("value") for e in gateway_container(render("ha"))["env"]}
    assert ha["REDIS_SENTINELS"] and ha["REDIS_SENTINEL_MASTER"]


def test_the_grace_period_covers_the_drain(rendered):
    config = load_config(K8S / "base" / "config", {})
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    pre_stop = gateway_container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + config.settings.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_the_pod_runs_unprivileged_on_a_read_only_root(rendered):
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # tempfile.mkdtemp: the workers' metric files
    args = container["args"]
    assert args[args.index("--config-dir") + 1] in mounts


def _adapter_rules() -> list[dict[str, Any]]:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    rules: list[dict[str, Any]] = values["rules"]["custom"]
    return rules


def test_the_hpa_metric_is_exported_and_served_by_the_adapter_rule(rendered):
    hpa = one(rendered, "HorizontalPodAutoscaler")
    pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    resources = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert resources == ["cpu"] and pods
    served = {}
    for rule in _adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])
        assert series is not None
        assert series.group(0) in EXPORTED_METRIC_FAMILIES
        served[rule["name"]["as"]] = series.group(0)
    for name in pods:
        assert name in served and name in EXPORTED_METRIC_FAMILIES


def test_the_config_map_holds_a_valid_config(rendered):
    maps = [d for d in rendered if d["kind"] == "ConfigMap"]
    assert [sorted(m["data"]) for m in maps] == [["routes.yaml", "tiers.yaml"]]
    load_config(K8S / "base" / "config", {})  # raises ConfigError on any problem
