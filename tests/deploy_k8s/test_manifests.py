"""The Kubernetes manifests (deploy/k8s), rendered and validated offline.

Each overlay is rendered with ``kubectl kustomize`` (Debian's kubectl has kustomize built in)
and every object is validated by ``kubernetes-validate`` against the schema of a current
Kubernetes release, bundled in the package (no network). The ServiceMonitor and the
PrometheusRule are CRDs of the Prometheus Operator that no Kubernetes schema knows: they are the
kinds skipped, and checked by hand (the rules by promtool in tests/test_alert_rules.py). Then
the manifests are checked against the code: probe paths, ports, the env names the gateway reads,
the grace period against ``shutdown_grace_s``, and the HPA's metric. ``ha+ledger`` is the ha
overlay with its commented ``components/ledger`` line turned on (rendered from a copy), where a
``gateway ledger ship`` Deployment replaces the ``gateway usage roll`` one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.parser import build_parser
from gateway.config.load import load_config
from gateway.config.runtime import Runtime
from gateway.http.api import ops
from gateway.ledger.settings import LedgerSettings
from tests.test_deploy import EXPORTED_METRIC_FAMILIES, image_extras

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "ha", "ha+ledger")
LEDGER_LINES = (
    "# components:\n#   - ../../components/ledger\n",
    "components:\n  - ../../components/ledger\n",
)
KUBERNETES_VERSION = "1.37.0"
# no schema in Kubernetes' own
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SHIPPER_CRDS = {("monitoring.coreos.com/v1", "PodMonitor")}  # the shipper's metrics
SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET")

kubectl = shutil.which("kubectl")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
pytestmark = pytest.mark.skipif(kubectl is None, reason="kubectl is not installed (tests/setup.sh)")


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects; ``ha+ledger``: the ha overlay with the ledger component on."""
    assert kubectl is not None
    with tempfile.TemporaryDirectory(prefix="k8s-") as tmp:
        directory = K8S / "overlays" / overlay
        if overlay == "ha+ledger":
            shutil.copytree(K8S, Path(tmp) / "k8s")
            directory = Path(tmp) / "k8s" / "overlays" / "ha"
            text = (directory / "kustomization.yaml").read_text()
            commented, on = LEDGER_LINES
            assert commented in text  # the line the ha overlay documents
            (directory / "kustomization.yaml").write_text(text.replace(commented, on))
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)],
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


def gateway_deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The gateway's own Deployments (serving, roller, shipper) by name; not the dev Redis."""
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/name") == "llm-gateway"
    }


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def resolved_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment as the kubelet builds it: its ConfigMaps (``envFrom``), then
    its own entries; a value from a Secret is None."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])  # KeyError: a map that is not there
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value")
    return env


def test_every_object_is_valid_against_the_kubernetes_schema(rendered):
    skipped = set()
    for doc in rendered:
        if (doc["apiVersion"], doc["kind"]) in CRDS | SHIPPER_CRDS:
            skipped.add((doc["apiVersion"], doc["kind"]))
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # the ServiceMonitor and rules are there (with a shipper, its PodMonitor): only CRDs skipped
    shipper = "llm-gateway-ledger-shipper" in gateway_deployments(rendered)
    assert skipped == (CRDS | SHIPPER_CRDS if shipper else CRDS)


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
    config = yaml.safe_load((K8S / "base" / "config" / "routes.yaml").read_text())
    key_envs = {u.get("api_key_env") for u in config["upstreams"].values()}
    sources = _sources()
    for deployment in gateway_deployments(rendered).values():
        container = only_container(deployment)
        for name in resolved_env(rendered, container):
            assert f'"{name}"' in sources or name in key_envs, name
        for entry in container["env"]:
            name = entry["name"]
            if any(word in name for word in SECRET_WORDS) or name == "DATABASE_URL":
                assert "value" not in entry, f"{name} must come from a Secret"
                assert entry["valueFrom"]["secretKeyRef"]["name"] == "llm-gateway-secrets"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source  # secrets are named one by one
    names = {entry["name"] for entry in gateway_container(rendered)["env"]}
    assert {key for key in key_envs if key} <= names  # every upstream key can be given


def test_the_store_is_set_by_each_overlay():
    dev = render("dev")
    assert (resolved_env(dev, gateway_container(dev))["REDIS_URL"] or "").startswith("redis://")
    ha = render("ha")
    env = resolved_env(ha, gateway_container(ha))
    assert env["REDIS_SENTINELS"] and env["REDIS_SENTINEL_MASTER"]


def test_every_process_uses_the_same_store_image_and_config(rendered):
    """The roller and the shipper must fold and ship the stream the serving pods write."""
    store_names = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
    seen = set()
    for deployment in gateway_deployments(rendered).values():
        container = only_container(deployment)
        env = resolved_env(rendered, container)
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        args = container["args"]
        config_map = volumes[mounts[args[args.index("--config-dir") + 1]]]["configMap"]["name"]
        seen.add(
            (
                tuple(env.get(name) for name in store_names),
                env.get("DATABASE_URL", "unset"),
                container["image"],
                config_map,
            )
        )
    assert len(seen) == 1, seen


def test_serving_pods_neither_roll_nor_ship(rendered):
    """The switches as the gateway's own code reads them."""
    env = {k: v or "" for k, v in resolved_env(rendered, gateway_container(rendered)).items()}
    assert Runtime.from_env(env).roll_usage is False
    assert LedgerSettings.from_env(env).ship is False


def test_one_roller_or_the_shipper_runs_beside_them(rendered):
    """Without the ledger the analytics read the Redis rollups: one ``gateway usage roll``.
    With it they read PostgreSQL: ``gateway ledger ship`` instead, and the ledger's URL."""
    deployments = gateway_deployments(rendered)
    ledger = "DATABASE_URL" in resolved_env(rendered, gateway_container(rendered))
    side = "llm-gateway-ledger-shipper" if ledger else "llm-gateway-roller"
    assert set(deployments) == {"llm-gateway", side}
    deployment = deployments[side]
    assert deployment["spec"]["replicas"] == 1
    container = only_container(deployment)
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    if ledger:
        assert (args.command, args.ledger_command) == ("ledger", "ship")
        assert resolved_env(rendered, container)["DATABASE_URL"] is None  # from the Secret
        assert "postgres" in image_extras()  # the image has asyncpg
        # its metrics (the ledger's alerts) are served where the PodMonitor scrapes
        assert args.metrics_host == "0.0.0.0"
        assert container["ports"] == [
            {"name": "metrics", "containerPort": args.metrics_port, "protocol": "TCP"}
        ]
        monitor = one(rendered, "PodMonitor", side)
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    else:
        assert (args.command, args.usage_command) == ("usage", "roll")
        assert "ports" not in container
    assert container["command"][0] == gateway_container(rendered)["command"][0] == "gateway"
    # no probes: no traffic comes to these pods (see the manifests' comments)
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):  # never counted as serving pods
        selector = one(rendered, kind)["spec"]
        selector = selector.get("selector", {})
        selector = selector.get("matchLabels", selector)
        assert not selector.items() <= labels.items(), kind
    assert one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == (
        "llm-gateway"
    )


def test_the_grace_period_covers_the_drain(rendered):
    config = load_config(K8S / "base" / "config", {})
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    pre_stop = gateway_container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + config.settings.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_the_pod_runs_unprivileged_on_a_read_only_root(rendered):
    for deployment in gateway_deployments(rendered).values():
        pod = deployment["spec"]["template"]["spec"]
        container = only_container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        args = container["args"]
        assert args[args.index("--config-dir") + 1] in mounts
    mounts = {m["mountPath"] for m in gateway_container(rendered)["volumeMounts"]}
    assert "/tmp" in mounts  # tempfile.mkdtemp: the workers' metric files


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
    files = [m for m in maps if m["metadata"]["name"].startswith("llm-gateway-config-")]
    assert [sorted(m["data"]) for m in files] == [["routes.yaml", "tiers.yaml"]]
    load_config(K8S / "base" / "config", {})  # raises ConfigError on any problem
