"""``gateway [serve] | check | usage export | schema``: the command line.

Every failure is one line on stderr: exit 2 for a wrong command line or environment value,
1 for an invalid config (one line per problem) or a command that cannot do its job; never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import NoReturn

from gateway import cli_admin, cli_control
from gateway.config.env_checks import runtime_problems, upstream_warnings
from gateway.config.model import Config
from gateway.config.reader import ConfigError
from gateway.config.targets import route_targets
from gateway.http.serve_guard import GuardedConfig, ReadDeadlines
from gateway.observe.metrics import MULTIPROC_ENV
from gateway.secret import Secret

CONFIG_DIR_ENV = "GATEWAY_CONFIG_DIR"
STARTUP_FAILURE = 3  # uvicorn's exit status when a server could not start
USAGE_ERROR = 2
BUILT_IN = ("serve", "check", "usage", "schema", "db", "ledger")
COMMANDS: tuple[str, ...] = (*BUILT_IN, *cli_admin.COMMANDS, *cli_control.COMMANDS)
_OWN_OPTIONS = ("-h", "--help", "--version")


class UsageError(Exception):
    """A wrong command line or environment value: one line, exit 2."""


class CommandFailed(Exception):
    """The command cannot do its job (e.g. no usage store): one line, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except UsageError as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except CommandFailed as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        print(f"gateway: error: {type(error).__name__}: {error}", file=sys.stderr)
        return USAGE_ERROR


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(_with_default_command(argv))
    if args.command == "check":
        return _check(args.config_dir)
    if args.command == "usage":
        return _usage_export(args)
    if args.command == "schema":
        return _schema()
    if args.command in ("db", "ledger"):
        return _ledger_command(args)
    if args.command == "models":
        return _models_check(args.config_dir)
    if args.command in cli_admin.COMMANDS:
        return cli_admin.run(args)
    if args.command in cli_control.COMMANDS:
        return cli_control.run(args)
    return _serve(args)


def _with_default_command(argv: list[str]) -> list[str]:
    """``serve`` when no command is named (``gateway --demo`` is ``gateway serve --demo``)."""
    if any(word in COMMANDS for word in argv) or any(word in _OWN_OPTIONS for word in argv):
        return argv
    return ["serve", *argv]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gateway",
        description="OpenAI-compatible LLM gateway. Without a command, runs `gateway serve`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gateway {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    defaults = ReadDeadlines()
    formatter = argparse.ArgumentDefaultsHelpFormatter
    serve = commands.add_parser(
        "serve",
        help="Run the gateway (the default command).",
        description="Run the gateway: load routes.yaml and tiers.yaml, then serve HTTP.",
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="serve routes that no upstream key serves from the built-in demo upstream, "
        "and print a dev key",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=defaults.header_s,
        help="seconds a client has to send a request's header (from connecting, or its first byte)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=defaults.body_s,
        help="seconds a client has to send a request's body, in all",
    )
    serve.add_argument(
        "--body-idle-timeout",
        type=float,
        default=defaults.body_idle_s,
        help="longest pause between reads of a request's body, in seconds",
    )
    check = commands.add_parser(
        "check",
        help="Validate routes.yaml, tiers.yaml and the environment they read.",
        description="Validate both files and the environment; print every problem and warning.",
        formatter_class=formatter,
    )
    usage = commands.add_parser(
        "usage",
        help="Read usage records from the store (REDIS_URL).",
        description="Read usage records from the store named by REDIS_URL.",
    )
    export = usage.add_subparsers(
        dest="usage_command", required=True, metavar="SUBCOMMAND", parser_class=_Parser
    ).add_parser(
        "export",
        help="Print usage records as CSV or JSON.",
        description="Print the usage records of [from, to) as CSV or JSON (needs REDIS_URL).",
        formatter_class=formatter,
    )
    export.add_argument(
        "--from", dest="start", required=True, help="YYYY-MM-DD, ISO date/time or epoch seconds"
    )
    export.add_argument(
        "--to", dest="end", required=True, help="YYYY-MM-DD (that day included), ISO or epoch"
    )
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    export.add_argument("--user", default=None, help="one user's records (default: all users)")
    export.add_argument("--tag", default=None, help="only the records carrying this tag")
    export.add_argument("--group-by", choices=("tag",), default=None, help="totals per tag")
    db_upgrade = (
        commands.add_parser(
            "db", help="The usage ledger's schema (DATABASE_URL).", description="docs/ledger.md"
        )
        .add_subparsers(dest="db_command", required=True, parser_class=_Parser)
        .add_parser("upgrade", help="Apply pending ledger migrations and create partitions ahead.")
    )
    ledger_ship = (
        commands.add_parser(
            "ledger", help="The usage ledger's shipper (DATABASE_URL, REDIS_URL).", description=""
        )
        .add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
        .add_parser("ship", help="Ship usage records from Redis to Postgres until stopped.")
    )
    cli_admin.add_parsers(commands, _Parser)
    cli_control.add_parsers(commands, _Parser)
    schema = commands.add_parser(
        "schema",
        help="Print the JSON Schema of routes.yaml and tiers.yaml.",
        description="Print a JSON document holding the JSON Schema of both files.",
    )
    models = commands.add_parser(
        "models",
        help="Compare routes.yaml with the upstreams' model lists.",
        description="Compare routes.yaml with what the upstreams serve.",
    )
    models_check = models.add_subparsers(
        dest="models_command", required=True, metavar="SUBCOMMAND", parser_class=_Parser
    ).add_parser(
        "check",
        help="Report configured ids an upstream does not list, and differing prices.",
        description=(
            "Ask each upstream's /v1/models; report configured ids it does not list (exit 1) "
            "and token prices that differ from routes.yaml; exit 2 when one could not be asked."
        ),
    )
    # Given before or after the command; a subcommand's own default would override the
    # value given before it, so only the top-level parser has one.
    config_help = f"directory holding routes.yaml and tiers.yaml (env {CONFIG_DIR_ENV})"
    parser.add_argument(
        "--config-dir", default=os.environ.get(CONFIG_DIR_ENV, "."), help=config_help
    )
    for sub in (serve, check, export, schema, models_check, db_upgrade, ledger_ship):
        sub.add_argument("--config-dir", default=argparse.SUPPRESS, help=config_help)
    parser.set_defaults(
        command="serve",
        demo=False,
        host="127.0.0.1",
        port=8080,
        workers=1,
        header_timeout=defaults.header_s,
        body_timeout=defaults.body_s,
        body_idle_timeout=defaults.body_idle_s,
    )
    return parser


def _load(config_dir: str, demo_key: Secret | None = None) -> Config:
    from gateway.serving import load_serving_config

    try:
        return load_serving_config(config_dir, demo_key)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        raise CommandFailed(f"invalid config in {os.path.abspath(config_dir)}") from None


def _check_environment() -> None:
    problems = runtime_problems(os.environ)
    if problems:
        raise UsageError("; ".join(problems))


def _check(config_dir: str) -> int:
    """Environment problems and config problems: one line each, exit 1; then warnings."""
    problems = runtime_problems(os.environ)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    config = _load(config_dir)
    warnings = upstream_warnings(config, os.environ)
    warnings += [
        f"{r.describe()}: no target can be tried" for r in route_targets(config) if not r.usable
    ]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"ok: {len(config.upstreams)} upstreams, {len(config.models)} models, "
        f"{len(config.tiers)} tiers, {len(config.keys)} keys"
        + (f", {len(warnings)} warnings" if warnings else "")
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.config.runtime import Runtime
    from gateway.observe.logs import configure_logging
    from gateway.serving import AppFactory, log_route_targets, run

    _check_environment()
    _check_serve_options(args)
    demo_key = Secret(f"sk-demo-{secrets.token_urlsafe(16)}") if args.demo else None
    config = _load(args.config_dir, demo_key)
    log_level = os.environ.get("GATEWAY_LOG_LEVEL", "INFO")
    configure_logging(log_level)
    log_route_targets(args.config_dir, demo=demo_key is not None)
    if demo_key is not None:
        print(demo_banner(args.host, args.port, demo_key), flush=True)
    multiproc_dir = _prepare_multiprocess_metrics(args.workers)
    factory = AppFactory(os.path.abspath(args.config_dir), Runtime.from_env(), log_level, demo_key)
    server_config = GuardedConfig(
        factory,  # handed to each worker whole (uvicorn pickles its config for spawned workers)
        read_deadlines=ReadDeadlines(
            args.header_timeout, args.body_timeout, args.body_idle_timeout
        ),
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        ws="none",  # the gateway serves no websockets
        access_log=False,
        proxy_headers=False,  # client addresses are never used; saves a middleware layer
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=int(config.settings.shutdown_grace_s),
    )
    started = True
    try:
        started = run(server_config)
    except KeyboardInterrupt:
        pass
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
    return 0 if started else STARTUP_FAILURE


def _check_serve_options(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a port number (0-65535)")
    if args.workers < 1:
        raise UsageError(f"--workers: expected at least 1, got {args.workers}")
    for name in ("header_timeout", "body_timeout", "body_idle_timeout"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')}: expected seconds above 0")


def demo_banner(host: str, port: int, key: Secret) -> str:
    """What ``--demo`` prints: the dev key and an example to paste."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base_url = f"http://{shown}:{port}/v1"
    example = (
        "from openai import OpenAI; "
        f'c = OpenAI(base_url="{base_url}", api_key="{key.reveal()}"); '
        'print(c.chat.completions.create(model="text", '
        'messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)'
    )
    return "\n".join(
        [
            "Demo mode: routes that no upstream key serves are answered by the built-in demo",
            "upstream (simulated text, marked x-gateway-provider: demo). Set TOGETHER_API_KEY",
            "and restart to use Together for the routes it serves.",
            f"Dev key (tier free): {key.reveal()}",
            "Try it:",
            f"  curl {base_url}/chat/completions -H 'Authorization: Bearer {key.reveal()}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"model": "text", "messages": [{"role": "user", "content": "Hello"}]}\'',
            f"  python -c '{example}'",
        ]
    )


def _prepare_multiprocess_metrics(workers: int) -> str | None:
    """Several workers share counters through prometheus-client's multiprocess files. The
    library reads their directory from ``PROMETHEUS_MULTIPROC_DIR`` when imported, so that
    variable (and only that) is set here for the workers to inherit."""
    if workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def _tag_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    return args.tag, args.group_by


def _usage_export(args: argparse.Namespace) -> int:
    from gateway.metering.export import export_records, parse_range
    from gateway.metering.store import StoreError

    _check_environment()
    try:
        parse_range(args.start, args.end, 0.0)
    except ValueError as error:
        raise UsageError(f"--from/--to: {error}") from None
    from gateway.config.runtime import sentinel_url

    redis_url = sentinel_url(os.environ) or os.environ.get("REDIS_URL")
    if not redis_url and not os.environ.get("DATABASE_URL"):
        raise CommandFailed(
            "usage export: REDIS_URL is not set (nor REDIS_SENTINELS), so there is no usage "
            "store to read "
            "(without Redis, usage is held in each gateway process only)"
        )
    config = _load(args.config_dir)
    from gateway.ledger.commands import records_reader
    from gateway.ledger.settings import LedgerSettings

    ledger = LedgerSettings.from_env(file=config.ledger)  # DATABASE_URL: any date range
    reader = records_reader(ledger) if ledger.enabled else None
    try:
        output = asyncio.run(
            export_records(
                config,
                redis_url,
                args.user,
                args.start,
                args.end,
                args.format,
                *_tag_args(args),
                reader=reader,
            )
        )
    except (OSError, StoreError) as error:
        raise CommandFailed(f"usage export: cannot read the store at REDIS_URL: {error}") from None
    sys.stdout.write(output)
    return 0


def _ledger_command(args: argparse.Namespace) -> int:
    """``gateway db upgrade`` and ``gateway ledger ship`` (docs/ledger.md)."""
    from gateway.ledger import commands
    from gateway.ledger.db import ERRORS
    from gateway.ledger.settings import LedgerSettings

    settings = LedgerSettings.from_env()
    if not settings.enabled:
        raise CommandFailed(f"{args.command}: DATABASE_URL is not set")
    try:
        if args.command == "db":
            applied = asyncio.run(commands.upgrade(settings))
            print("\n".join(f"applied {name}" for name in applied) or "up to date")
            return 0
        from gateway.config.runtime import sentinel_url
        from gateway.metering import create_store
        from gateway.metering.redis_store import RedisStore

        redis_url = sentinel_url(os.environ) or os.environ.get("REDIS_URL")
        config = _load(args.config_dir)  # tiers.yaml ``ledger:``, under the env's overrides
        store = create_store(redis_url, config.settings) if redis_url else None
        if not isinstance(store, RedisStore):
            raise CommandFailed("ledger ship: REDIS_URL is not set: no usage stream to ship")
        settings = LedgerSettings.from_env(file=config.ledger)
        asyncio.run(commands.ship_forever(settings, store.client))
    except ERRORS as error:
        raise CommandFailed(f"{args.command}: Postgres: {type(error).__name__}: {error}") from None
    return 0


def _models_check(config_dir: str) -> int:
    import httpx

    from gateway.providers.catalog import TIMEOUT_S, Finding, check_catalog, report

    config = _load(config_dir)

    async def run() -> list[Finding]:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            return await check_catalog(config, client)

    lines, status = report(asyncio.run(run()))
    for line in lines:
        print(line)
    if status == 0:
        print("ok: every configured model is listed by its upstream at the configured price")
    return status


def _schema() -> int:
    import orjson

    from gateway.config.schema import config_schema

    sys.stdout.write(orjson.dumps(config_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
