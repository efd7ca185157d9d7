"""The command line's grammar: every command, its options and their help texts."""

from __future__ import annotations

import argparse
import os
from typing import Any

from gateway.cli import admin as cli_admin
from gateway.cli import control as cli_control
from gateway.cli import orgs as cli_orgs
from gateway.cli import secrets
from gateway.cli.base import CONFIG_DIR_ENV, Parser
from gateway.cli.tls_options import add_tls_options
from gateway.http.serve_guard import ReadDeadlines

BUILT_IN = ("serve", "check", "usage", "schema", "db", "ledger")
COMMANDS: tuple[str, ...] = (
    *BUILT_IN,
    *cli_admin.COMMANDS,
    *cli_control.COMMANDS,
    *cli_orgs.COMMANDS,
    *secrets.COMMANDS,
)
FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; its subcommands are added in the order ``--help`` lists them."""
    parser = Parser(
        prog="gateway",
        description="OpenAI-compatible LLM gateway. Without a command, runs `gateway serve`.",
        formatter_class=FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"gateway {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    reading_config = [_add_serve(commands), _add_check(commands), *_add_usage(commands)]
    reading_config += _add_ledger(commands)
    cli_admin.add_parsers(commands, Parser)
    cli_control.add_parsers(commands, Parser)
    cli_orgs.add_parsers(commands, Parser)
    secrets.add_parsers(commands, Parser)
    reading_config += [_add_schema(commands), _add_models_check(commands)]
    _add_config_dir(parser, reading_config)
    defaults = ReadDeadlines()
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_config_dir(
    parser: argparse.ArgumentParser, subcommands: list[argparse.ArgumentParser]
) -> None:
    # Given before or after the command; a subcommand's own default would override the
    # value given before it, so only the top-level parser has one.
    config_help = f"directory holding routes.yaml and tiers.yaml (env {CONFIG_DIR_ENV})"
    parser.add_argument(
        "--config-dir", default=os.environ.get(CONFIG_DIR_ENV, "."), help=config_help
    )
    for sub in subcommands:
        sub.add_argument("--config-dir", default=argparse.SUPPRESS, help=config_help)


def _add_serve(commands: Any) -> argparse.ArgumentParser:
    defaults = ReadDeadlines()
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="Run the gateway (the default command).",
        description="Run the gateway: load routes.yaml and tiers.yaml, then serve HTTP.",
        formatter_class=FORMATTER,
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
    add_tls_options(serve)
    return serve


def _add_check(commands: Any) -> argparse.ArgumentParser:
    check: argparse.ArgumentParser = commands.add_parser(
        "check",
        help="Validate routes.yaml, tiers.yaml and the environment they read.",
        description="Validate both files and the environment; print every problem and warning.",
        formatter_class=FORMATTER,
    )
    return check


def _add_usage(commands: Any) -> list[argparse.ArgumentParser]:
    """``usage export`` and ``usage roll``."""
    usage = commands.add_parser(
        "usage",
        help="Read usage records from the store (REDIS_URL), or fold them into the rollups.",
        description="Read usage records from the store named by REDIS_URL, or fold them into "
        "the analytics rollups.",
    )
    actions = usage.add_subparsers(
        dest="usage_command", required=True, metavar="ACTION", parser_class=Parser
    )
    roll: argparse.ArgumentParser = actions.add_parser(
        "roll",
        help="Fold new usage records into the analytics rollups until stopped.",
        description="Fold the usage records added to the Redis stream (REDIS_URL) into the "
        "analytics rollups every 2 s until stopped, what each gateway process does in its "
        "background unless GATEWAY_USAGE_ROLL=0; any number may run (each range is claimed "
        "by one).",
    )
    return [_add_usage_export(actions), roll]


def _add_usage_export(actions: Any) -> argparse.ArgumentParser:
    export: argparse.ArgumentParser = actions.add_parser(
        "export",
        help="Print usage records as CSV, JSON or XLSX.",
        description="Print the usage records of [from, to) as CSV, JSON or XLSX (needs "
        "REDIS_URL; XLSX is binary: give --output or redirect stdout).",
        formatter_class=FORMATTER,
    )
    export.add_argument(
        "--from", dest="start", required=True, help="YYYY-MM-DD, ISO date/time or epoch seconds"
    )
    export.add_argument(
        "--to", dest="end", required=True, help="YYYY-MM-DD (that day included), ISO or epoch"
    )
    export.add_argument(
        "--format", choices=("csv", "json", "xlsx"), default="csv", help="output format"
    )
    export.add_argument("--output", "-o", default=None, help="write to this file (default: stdout)")
    export.add_argument("--user", default=None, help="one user's records (default: all users)")
    export.add_argument("--tag", default=None, help="only the records carrying this tag")
    export.add_argument("--group-by", choices=("tag",), default=None, help="totals per tag")
    return export


def _add_ledger(commands: Any) -> list[argparse.ArgumentParser]:
    """``db upgrade`` and ``ledger ship``."""
    db = commands.add_parser(
        "db",
        help="The usage ledger's schema (DATABASE_URL).",
        description="Manage the schema of the PostgreSQL usage ledger named by DATABASE_URL "
        "(docs/ledger.md).",
    )
    db_upgrade: argparse.ArgumentParser = db.add_subparsers(
        dest="db_command", required=True, metavar="ACTION", parser_class=Parser
    ).add_parser(
        "upgrade",
        help="Apply pending ledger migrations and create partitions ahead.",
        description="Apply the ledger's pending migrations to DATABASE_URL and create the "
        "day partitions ahead, then print what was applied (or 'up to date'). Gateways also "
        "migrate when their shipper starts unless GATEWAY_LEDGER_AUTO_MIGRATE=false.",
    )
    ledger = commands.add_parser(
        "ledger",
        help="The usage ledger's shipper (DATABASE_URL, REDIS_URL).",
        description="Run the usage ledger's shipper outside the gateway (docs/ledger.md).",
    )
    ledger_ship: argparse.ArgumentParser = ledger.add_subparsers(
        dest="ledger_command", required=True, metavar="ACTION", parser_class=Parser
    ).add_parser(
        "ship",
        help="Ship usage records from Redis to Postgres until stopped.",
        description="Copy usage records from the Redis stream (REDIS_URL) into PostgreSQL "
        "(DATABASE_URL) until stopped, with the ledger: settings of tiers.yaml under their "
        "GATEWAY_LEDGER_* overrides; any number may run (they share the work).",
        formatter_class=FORMATTER,
    )
    ledger_ship.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve the ledger's metrics (lag, rows shipped, failures) on this port's /metrics",
    )
    ledger_ship.add_argument(
        "--metrics-host", default="127.0.0.1", help="the address --metrics-port listens on"
    )
    return [db_upgrade, ledger_ship]


def _add_schema(commands: Any) -> argparse.ArgumentParser:
    schema: argparse.ArgumentParser = commands.add_parser(
        "schema",
        help="Print the JSON Schema of routes.yaml and tiers.yaml.",
        description="Print a JSON document holding the JSON Schema of both files.",
    )
    return schema


def _add_models_check(commands: Any) -> argparse.ArgumentParser:
    models = commands.add_parser(
        "models",
        help="Compare routes.yaml with the upstreams' model lists.",
        description="Compare routes.yaml with what the upstreams serve.",
    )
    models_check: argparse.ArgumentParser = models.add_subparsers(
        dest="models_command", required=True, metavar="ACTION", parser_class=Parser
    ).add_parser(
        "check",
        help="Report configured ids an upstream does not list, and differing prices.",
        description=(
            "Ask each upstream's /v1/models; report configured ids it does not list (exit 1) "
            "and token prices that differ from routes.yaml; exit 2 when one could not be asked."
        ),
    )
    return models_check
