"""``gateway serve | check | usage export``."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from gateway.config.load import load_config
from gateway.config.model import Config
from gateway.config.reader import ConfigError
from gateway.http.serve_guard import GuardedConfig, ReadDeadlines
from gateway.observe.metrics import MULTIPROC_ENV

CONFIG_DIR_ENV = "GATEWAY_CONFIG_DIR"
STARTUP_FAILURE = 3  # uvicorn's exit status when a server could not start


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.config_dir)
    if args.command == "usage":
        return _usage_export(args)
    return _serve(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible LLM gateway")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the gateway (the default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    defaults = ReadDeadlines()
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
    check = commands.add_parser("check", help="validate routes.yaml and tiers.yaml")
    usage = commands.add_parser("usage", help="usage records")
    export = usage.add_subparsers(dest="usage_command", required=True).add_parser(
        "export", help="print usage records as CSV or JSON"
    )
    export.add_argument("--from", dest="start", required=True, help="ISO date/time or epoch")
    export.add_argument("--to", dest="end", required=True, help="ISO date/time or epoch")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--user", default=None, help="one user's records (default: all)")
    # Given before or after the command; a subcommand's own default would override the
    # value given before it, so only the top-level parser has one.
    parser.add_argument("--config-dir", default=os.environ.get(CONFIG_DIR_ENV, "."))
    for sub in (serve, check, export):
        sub.add_argument("--config-dir", default=argparse.SUPPRESS)
    parser.set_defaults(
        command="serve",
        host="127.0.0.1",
        port=8080,
        workers=1,
        header_timeout=defaults.header_s,
        body_timeout=defaults.body_s,
        body_idle_timeout=defaults.body_idle_s,
    )
    return parser


def _load(config_dir: str) -> Config | None:
    try:
        return load_config(config_dir)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def _check(config_dir: str) -> int:
    config = _load(config_dir)
    if config is None:
        return 1
    print(
        f"ok: {len(config.upstreams)} upstreams, {len(config.models)} models, "
        f"{len(config.tiers)} tiers, {len(config.keys)} keys"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.config.runtime import Runtime
    from gateway.serving import AppFactory, run

    config = _load(args.config_dir)
    if config is None:
        return 1
    multiproc_dir = _prepare_multiprocess_metrics(args.workers)
    factory = AppFactory(
        os.path.abspath(args.config_dir),
        Runtime.from_env(),
        os.environ.get("GATEWAY_LOG_LEVEL", "INFO"),
    )
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


def _usage_export(args: argparse.Namespace) -> int:
    config = _load(args.config_dir)
    if config is None:
        return 1
    from gateway.metering.export import export_records

    output = asyncio.run(
        export_records(
            config, os.environ.get("REDIS_URL"), args.user, args.start, args.end, args.format
        )
    )
    sys.stdout.write(output)
    return 0
