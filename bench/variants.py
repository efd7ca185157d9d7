"""Named gateway variants (tree + env + setup) on the chat and stream scenarios in one run.

    python bench/variants.py --variants base,main,entities,ledger [--rounds 3] [--duration 10]

Like ab.py, but with any number of variants. The mocks (nginx, Redis) start once; each round
runs every variant once, in the order given in even rounds and reversed in odd ones (ABBA), so
drifting machine load and the position in a round hit all alike. Before each turn Redis is
emptied (FLUSHALL), so no variant inherits another's keys or usage stream.

- ``base``: the tree ``--base-tree`` (default /tmp/base_tree), plain: the YAML key
  (``GATEWAY_KEYS``) and bench/config.
- ``main``: ``--main-tree`` (default: this repository), plain: caching off, no ledger, nothing
  set at run time. ``main_again``: the same again (an A/A pair shows the run's noise floor).
- ``entities``: main with ``GATEWAY_ADMIN_TOKEN``; after start, through the admin API: a virtual
  key (rpm, tpm and budget far too large to bind), the flag ``together_ai_fallback``
  ``{enabled: true, rollout_percent: 100}`` and the tier quota ``bench/text_generation`` set at
  run time. wrk sends the virtual key. After the load it prints the key's spend and the flag's
  and quota's ``source`` (``runtime``): the load went through them.
- ``entities_nolimits``: the same, but the virtual key has no rpm/tpm/budget of its own (its
  spend is still counted).
- ``otel_off``, ``otel_1``, ``otel_100``: main with OpenTelemetry tracing off, on with 1% of
  traces sampled (``parentbased_traceidratio`` 0.01) and on with all (``always_on``); spans go to
  nginx, which answers 200 and drops them (needs the ``otel`` extra).
- ``entities_nolimits_again``: the same again (an A/A pair with it); ``team_levels``: a key in
  a team in an organization with every level limit set (``TeamLevels``), against a key with
  none (``entities_nolimits``): the benchmark of docs/organizations.md; ``team_levels_base``
  the same on ``--base-tree`` (a change's before, in the same run); ``runtime_key`` (and
  ``runtime_key_again``, its A/A pair): a run-time key of the same user and tier with no team
  and no limits, nothing else set at run time: the fair "key with none" for ``team_levels``.
- ``ledger``: main with ``DATABASE_URL`` → a PostgreSQL this script starts (fsync off, pinned
  with the load on CPU 1); the shipper runs in the gateway process.

After each ledger turn it prints the shipper's lag right after the load, how long it took to
reach 0, and the rows shipped (from /readyz and /metrics). At the end, per scenario and
variant: the median req/s over the rounds, its ratio to the first variant's median, the median
of the per-round ratios (``paired_``: each round's pair ran minutes apart at most), and the
median CPU µs per request of the gateway and of Redis (from /proc). ``--profile DIR`` writes
py-spy's collapsed stacks of each gateway under load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from aio import run_loop
from http_client import Target, measure_ttfb
from pg_server import PostgresServer, available
from phases import show_process
from procs import ProcessGroup
from report import Report, ScenarioResult, median
from scenarios import Knobs, Load, wrk_scenario
from services import (
    CONFIG_DIR,
    TIER,
    GatewaySpec,
    Layout,
    Mocks,
    RunningGateway,
    chat_body,
    load_machine,
    start_gateway,
    start_mocks,
)
from wrk_load import LoadSpec, run_wrk

SCENARIOS = (("chat", "bench-json", False), ("stream", "bench-sse", True))  # _c<connections>
MAIN_TREE = Path(__file__).resolve().parents[1]
BIG = 10**11  # limits that never bind during a run
FLAG_PATH = "/v1/admin/flags/together_ai_fallback"
QUOTA_PATH = f"/v1/admin/tiers/{TIER}/quotas/text_generation"
Setup = Callable[[RunningGateway], str]  # → the key wrk uses
After = Callable[[RunningGateway, int], None]  # (gateway, round) after the load


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path
    env: Mapping[str, str] = field(default_factory=dict)
    setup: Setup | None = None
    after: After | None = None
    mocks_env: Callable[[Mocks], Mapping[str, str]] | None = None  # env naming the mocks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="base,main,entities,ledger")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--base-tree", type=Path, default=Path("/tmp/base_tree"))
    parser.add_argument("--main-tree", type=Path, default=MAIN_TREE)
    parser.add_argument(
        "--profile", type=Path, default=None,
        help="directory for py-spy's collapsed stacks of each gateway under load",
    )  # fmt: skip
    parser.add_argument(
        "--connections", type=int, default=16,
        help="wrk's connections in the measured scenarios (1: the one-connection path)",
    )  # fmt: skip
    return parser.parse_args(argv)


# --- the admin API (entities) -------------------------------------------------------------


def admin(
    gateway: RunningGateway, token: str, method: str, path: str, body: object
) -> dict[str, Any]:
    request = urllib.request.Request(
        gateway.url(path),
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read() or b"{}"))
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: {error.code} {error.read()[:300]!r}") from None


class Entities:
    """The entities variant's setup (create them, return the virtual key) and after-load check."""

    def __init__(self, token: str, *, limits: bool = True) -> None:
        self.token = token
        self.key_id = ""
        self.limits = limits  # False: the key has no rpm/tpm/budget of its own

    def setup(self, gateway: RunningGateway) -> str:
        token = self.token
        limits = {
            "rpm": BIG, "tpm": BIG, "budget_usd": {"day": 1_000_000, "month": 1_000_000},
        } if self.limits else {}  # fmt: skip
        body = {"user": "bench-virtual", "tier": TIER, "name": "bench", **limits}
        created = admin(gateway, token, "POST", "/v1/admin/keys", body)
        self.key_id = str(created["id"])
        flag = {"enabled": True, "rollout_percent": 100}
        admin(gateway, token, "PUT", FLAG_PATH, flag)
        quota = {"requests_per_day": BIG, "tokens_per_day": BIG, "tokens_per_request": 4096}
        admin(gateway, token, "PUT", QUOTA_PATH, quota)
        key = str(created["key"])
        wait_for_key(gateway, key)
        return key

    def after(self, gateway: RunningGateway, turn: int) -> None:
        """That the load went through the entities: the key's spend, the sources in force."""
        key = admin(gateway, self.token, "GET", f"/v1/admin/keys/{self.key_id}", None)
        flag = admin(gateway, self.token, "GET", FLAG_PATH, None)
        quota = admin(gateway, self.token, "GET", QUOTA_PATH, None)
        print(
            f"entities round={turn} key_spend_usd_day={key.get('spend_usd', {}).get('day')} "
            f"flag_source={flag.get('source')} quota_source={quota.get('source')}",
            flush=True,
        )


class TeamLevels:
    """The ``team_levels`` variant's setup: a key in a team in an organization, every level
    limit set (a budget, requests and tokens in each of the four windows, and
    ``max_parallel``, at both levels: 26 more counters per reservation), far too large to bind;
    the key has none of its own (docs/organizations.md). ``team=False``: the same run-time key
    (user, tier, no limits of its own) without a team, the benchmark's "key with none"."""

    def __init__(self, token: str, *, team: bool = True) -> None:
        self.token = token
        self.team = team

    def setup(self, gateway: RunningGateway) -> str:
        if not self.team:
            body = {"user": "bench-virtual", "tier": TIER, "name": "bench"}
            key = str(admin(gateway, self.token, "POST", "/v1/admin/keys", body)["key"])
            wait_for_key(gateway, key)
            return key
        every = {window: BIG for window in ("minute", "hour", "day", "month")}
        limits = {
            "budget_usd": dict.fromkeys(every, 1_000_000), "requests": every, "tokens": every,
            "max_parallel": 1_000_000,
        }  # fmt: skip
        org = {"id": "bench-org", "timezone": "Europe/Paris", "limits": limits}
        admin(gateway, self.token, "POST", "/v1/admin/orgs", org)
        team = {"id": "bench-team", "org": "bench-org", "tier": TIER,
                "members": ["bench-virtual"], "limits": limits}  # fmt: skip
        admin(gateway, self.token, "POST", "/v1/admin/teams", team)
        body = {"user": "bench-virtual", "tier": TIER, "name": "bench", "team": "bench-team"}
        key = str(admin(gateway, self.token, "POST", "/v1/admin/keys", body)["key"])
        wait_for_key(gateway, key)
        return key

    def after(self, gateway: RunningGateway, turn: int) -> None:
        """That the load went through the levels: the team's counters in their windows."""
        usage = admin(gateway, self.token, "GET", "/v1/admin/teams/bench-team/usage", None)
        print(f"team_levels round={turn} team_usage={json.dumps(usage)[:300]}", flush=True)


def wait_for_key(gateway: RunningGateway, key: str, timeout_s: float = 15.0) -> None:
    """Until a JSON and a streamed request with ``key`` succeed (the snapshot has it)."""
    target = Target("127.0.0.1", gateway.port, gateway.target().path, key)
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        for model, stream in (("bench-json", False), ("bench-sse", True)):
            result = run_loop(measure_ttfb(target, chat_body(model, stream), 1, stream))
            last = result.last_error if result.errors else ""
            if last:
                break
        if not last:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the virtual key is not accepted: {last}")


# --- the ledger ---------------------------------------------------------------------------


def read_json(gateway: RunningGateway, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(gateway.url(path), timeout=10) as answer:
            return dict(json.loads(answer.read()))
    except urllib.error.HTTPError as error:  # /readyz may answer 503 with a body
        return dict(json.loads(error.read() or b"{}"))


def metric_sum(gateway: RunningGateway, name: str) -> float:
    with urllib.request.urlopen(gateway.url("/metrics"), timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    )


def ledger_after(gateway: RunningGateway, turn: int, timeout_s: float = 60.0) -> None:
    """The shipper's lag right after the load, the time until it is 0, and the rows shipped."""
    started = time.monotonic()
    ledger = read_json(gateway, "/readyz").get("ledger", {})
    lag = lag_at_end = ledger.get("lag_records")
    while isinstance(lag, int) and lag > 0 and time.monotonic() - started < timeout_s:
        time.sleep(0.25)
        ledger = read_json(gateway, "/readyz").get("ledger", {})
        lag = ledger.get("lag_records")
    drained = time.monotonic() - started
    rows = metric_sum(gateway, "gateway_ledger_rows_shipped_total")
    requests = metric_sum(gateway, "gateway_requests_total")
    print(
        f"ledger round={turn} lag_after_load={lag_at_end} lag_now={lag} drain_s={drained:.2f} "
        f"rows_shipped={rows:.0f} gateway_requests={requests:.0f} "
        f"postgres={ledger.get('postgres')} shipping={ledger.get('shipping')}",
        flush=True,
    )


class LedgerSidecar:
    """The ``ledger_sidecar`` variant: the serving process does not ship
    (``GATEWAY_LEDGER_SHIP=0``); one ``gateway ledger ship`` beside it does, on the load's CPUs
    (as its own pod would)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.redis_url = ""
        self.cpus: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "GATEWAY_LEDGER_SHIP": "0"}

    def setup(self, gateway: RunningGateway) -> str:
        argv = [sys.executable, "-P", "-m", "gateway", "ledger", "ship",
                "--config-dir", str(CONFIG_DIR)]  # fmt: skip
        if self.cpus:
            argv = ["taskset", "-c", self.cpus, *argv]
        env = {**os.environ, "REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url}
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        return gateway.key

    def after(self, gateway: RunningGateway, turn: int, timeout_s: float = 60.0) -> None:
        """How long the sidecar takes to ship everything after the load, then stop it."""
        started = time.monotonic()
        client = redis.Redis.from_url(self.redis_url)
        lag = self._lag(client)
        while lag and time.monotonic() - started < timeout_s:
            time.sleep(0.25)
            lag = self._lag(client)
        requests = metric_sum(gateway, "gateway_requests_total")
        print(
            f"ledger_sidecar round={turn} lag_now={lag} drain_s={time.monotonic() - started:.2f} "
            f"gateway_requests={requests:.0f}",
            flush=True,
        )
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    @staticmethod
    def _lag(client: redis.Redis) -> int:
        groups = client.xinfo_groups("gw:usage")
        return sum(int(g.get("lag") or 0) + int(g.get("pending") or 0) for g in groups) or 0


# --- the run ------------------------------------------------------------------------------


def build_variants(
    names: Sequence[str], args: argparse.Namespace, pg_url: str, sidecar: LedgerSidecar
) -> list[Variant]:
    entities = Entities(f"adm-bench-{secrets.token_hex(12)}")
    plain = Entities(entities.token, limits=False)
    levels = TeamLevels(entities.token)
    runtime = TeamLevels(entities.token, team=False)
    known = {
        "base": Variant("base", args.base_tree),
        "main": Variant("main", args.main_tree),
        "main_again": Variant("main_again", args.main_tree),  # A/A: the noise floor
        "main_admin": Variant(
            "main_admin", args.main_tree, {"GATEWAY_ADMIN_TOKEN": entities.token}
        ),  # the admin API on, nothing set through it
        "entities": Variant(
            "entities",
            args.main_tree,
            {"GATEWAY_ADMIN_TOKEN": entities.token},
            entities.setup,
            entities.after,
        ),
        "entities_nolimits": Variant(
            "entities_nolimits",
            args.main_tree,
            {"GATEWAY_ADMIN_TOKEN": plain.token},
            plain.setup,
            plain.after,
        ),
        "entities_nolimits_again": Variant(  # A/A: the noise floor of the two above
            "entities_nolimits_again",
            args.main_tree,
            {"GATEWAY_ADMIN_TOKEN": plain.token},
            plain.setup,
        ),
        "team_levels": Variant(
            "team_levels",
            args.main_tree,
            {"GATEWAY_ADMIN_TOKEN": levels.token},
            levels.setup,
            levels.after,
        ),
        "runtime_key": Variant(  # the benchmark's "key with none": same user, tier, no team
            "runtime_key", args.main_tree, {"GATEWAY_ADMIN_TOKEN": runtime.token}, runtime.setup
        ),
        "runtime_key_again": Variant(  # A/A: the noise floor of the one above
            "runtime_key_again",
            args.main_tree,
            {"GATEWAY_ADMIN_TOKEN": runtime.token},
            runtime.setup,
        ),
        "team_levels_base": Variant(  # the same on --base-tree: a change's before and after
            "team_levels_base",
            args.base_tree,
            {"GATEWAY_ADMIN_TOKEN": levels.token},
            levels.setup,
        ),
        "otel_off": Variant("otel_off", args.main_tree),
        "otel_1": Variant(
            "otel_1",
            args.main_tree,
            mocks_env=lambda mocks: mocks.otel_env("parentbased_traceidratio", "0.01"),
        ),
        "otel_100": Variant(
            "otel_100", args.main_tree, mocks_env=lambda mocks: mocks.otel_env("always_on")
        ),
        "ledger": Variant("ledger", args.main_tree, {"DATABASE_URL": pg_url}, None, ledger_after),
        "ledger_sidecar": Variant(
            "ledger_sidecar", args.main_tree, sidecar.env(), sidecar.setup, sidecar.after
        ),
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(known)}")
    return [known[name] for name in names]


@dataclass(frozen=True)
class Harness:
    procs: ProcessGroup
    layout: Layout
    mocks: Mocks
    knobs: Knobs
    report: Report
    key: str
    profile_dir: Path | None = None
    connections: int = 16


def _py_spy(output: Path, pid: int) -> subprocess.Popen[bytes]:
    argv = ["py-spy", "record", "--format", "raw", "--rate", "1000", "--nonblocking",
            "-o", str(output), "--pid", str(pid)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def profiled(directory: Path | None, name: str, pids: Sequence[int]) -> Iterator[None]:
    """py-spy samples the gateway's processes over the block (collapsed stacks), when asked."""
    if directory is None:
        yield
        return
    spies = [_py_spy(directory / f"{name}_{pid}.txt", pid) for pid in pids]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)


def one_turn(harness: Harness, variant: Variant, turn: int) -> dict[str, float]:
    redis.Redis.from_url(harness.mocks.redis_url).flushall()
    os.environ["PYTHONPATH"] = str(variant.tree.resolve())  # the gateway imports this tree
    env = {**variant.env, **(variant.mocks_env(harness.mocks) if variant.mocks_env else {})}
    spec = GatewaySpec(env=env, name=f"gateway_{variant.name}")
    gateway = start_gateway(harness.procs, harness.mocks, harness.layout, harness.key, spec)
    show_process(harness.report, gateway.proc)
    key = variant.setup(gateway) if variant.setup else harness.key
    for model, stream in (("bench-json", False), ("bench-sse", True)):  # warm-up, 1 s each
        run_wrk(harness.knobs.wrk, LoadSpec(gateway.url(), 16, 1, model, stream, key))
    rates = {}
    for kind, model, stream in SCENARIOS:
        name = f"{kind}_c{harness.connections}"
        load = Load(
            f"{variant.name}_{name}_r{turn}", gateway.url(), harness.connections, model, stream, key
        )
        watch = {"gateway": gateway.pids(), "redis": [harness.mocks.redis.pid]}
        stats = redis.Redis.from_url(harness.mocks.redis_url)
        stats.config_resetstat()
        with profiled(harness.profile_dir, f"{variant.name}_{name}_r{turn}", gateway.pids()):
            result = wrk_scenario(harness.report, harness.knobs, load, watch)
        print(redis_commands(load.name, stats.info("commandstats"), result), flush=True)
        rates[name] = result.rps
        for group in ("gateway", "redis"):
            rates[f"{name}_{group}_us"] = cpu_us_per_request(result, group)
    if variant.after:
        variant.after(gateway, turn)
    harness.procs.stop(gateway.proc)
    return rates


def redis_commands(name: str, stats: Mapping[str, Any], result: ScenarioResult) -> str:
    """Redis's own account of the load (INFO commandstats, reset before it): per answered
    request, the calls and the µs spent running them, in total and for the costliest commands
    (scripts count once, the commands inside them again)."""
    requests = float(result.extra.get("requests", 0) or 0)
    if not requests:
        return f"redis_commands scenario={name} requests=0"
    per = sorted(
        ((command.removeprefix("cmdstat_"), values) for command, values in stats.items()),
        key=lambda item: -float(item[1]["usec"]),
    )
    top = " ".join(
        f"{command}={values['calls'] / requests:.2f}x{values['usec_per_call']:.1f}us"
        for command, values in per[:6]
    )
    scripts = sum(float(v["usec"]) for c, v in per if c in ("evalsha", "eval"))
    return f"redis_commands scenario={name} scripts_us_per_req={scripts / requests:.1f} {top}"


def cpu_us_per_request(result: ScenarioResult, group: str) -> float:
    """CPU µs one process group spent per answered request during the load."""
    pct = float(result.extra.get("process_cpu_pct", {}).get(group, 0.0))
    return 1e4 * pct / result.rps if result.rps else 0.0


def print_summary(
    variants: Sequence[Variant], seen: dict[str, dict[str, list[float]]], connections: int
) -> None:
    first = variants[0].name
    for name in (f"{kind}_c{connections}" for kind, _, _ in SCENARIOS):
        reference = median(seen[first][name])
        for variant in variants:
            rates = seen[variant.name][name]
            value = median(rates)
            rounds = ",".join(f"{rate:.0f}" for rate in rates)
            paired = median([a / b for a, b in zip(rates, seen[first][name], strict=True)])
            cpu = " ".join(
                f"{group}_cpu_us_per_req={median(seen[variant.name][f'{name}_{group}_us']):.0f}"
                for group in ("gateway", "redis")
            )
            print(
                f"variants scenario={name} variant={variant.name} median_rps={value:.0f} "
                f"over_{first}={value / reference:.3f} paired_{first}={paired:.3f} "
                f"rounds=[{rounds}] {cpu}",
                flush=True,
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    tools, layout = load_machine()
    postgres: PostgresServer | None = None
    if "ledger" in names or "ledger_sidecar" in names:
        if not available():
            raise SystemExit("the ledger variant needs PostgreSQL (initdb, pg_ctl)")
        postgres = PostgresServer(cpus=layout.load_cpus).start()
    try:
        sidecar = LedgerSidecar(postgres.url if postgres else "")
        variants = build_variants(names, args, sidecar.database_url, sidecar)
        report = Report()
        knobs = Knobs(tools["wrk"], args.duration, 0, 0, 0)
        seen: dict[str, dict[str, list[float]]] = {variant.name: {} for variant in variants}
        with (
            tempfile.TemporaryDirectory(prefix="gateway-variants-") as tmp,
            ProcessGroup(Path(tmp), layout.pin) as procs,
        ):
            mocks = start_mocks(procs, tools, layout)
            key = f"sk-bench-{secrets.token_hex(12)}"
            harness = Harness(
                procs, layout, mocks, knobs, report, key, args.profile, args.connections
            )
            sidecar.redis_url, sidecar.cpus = mocks.redis_url, layout.load_cpus
            for turn in range(args.rounds):
                for variant in variants if turn % 2 == 0 else variants[::-1]:
                    for name, rps in one_turn(harness, variant, turn).items():
                        seen[variant.name].setdefault(name, []).append(rps)
        print_summary(variants, seen, args.connections)
    finally:
        if postgres is not None:
            postgres.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
