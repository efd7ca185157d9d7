"""``gateway [serve] | check | usage export | schema``: the command line's entry and dispatch.

Every failure ends in one ``gateway: error:`` line on stderr: exit 2 for a wrong command line or
environment value, 1 for an invalid config (one line per problem before it) or a command that
cannot do its job, 3 when the server could not start (its port is in use); never a traceback.
The grammar is in ``parser``, each command's work in its own module.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gateway.cli import admin as cli_admin
from gateway.cli import control as cli_control
from gateway.cli import orgs as cli_orgs
from gateway.cli import secrets
from gateway.cli.base import (
    CONFIG_DIR_ENV,
    STARTUP_FAILURE,
    USAGE_ERROR,
    CommandFailed,
    StartupFailed,
    UsageError,
    unknown_command,
)
from gateway.cli.config_files import check, models_check, schema
from gateway.cli.parser import COMMANDS, build_parser
from gateway.cli.serve import demo_banner, serve
from gateway.cli.usage import ledger_command, usage_export, usage_roll

__all__ = [
    "COMMANDS",
    "CONFIG_DIR_ENV",
    "STARTUP_FAILURE",
    "USAGE_ERROR",
    "CommandFailed",
    "UsageError",
    "demo_banner",
    "main",
]
_OWN_OPTIONS = ("-h", "--help", "--version")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a failure prints one line and gives its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except UsageError as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except CommandFailed as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return 1
    except StartupFailed as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return STARTUP_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        print(f"gateway: error: {type(error).__name__}: {error}", file=sys.stderr)
        return USAGE_ERROR


def _run(argv: list[str]) -> int:
    parser = build_parser()
    words = _with_default_command(argv)
    args, unrecognized = parser.parse_known_args(words)
    if unrecognized:
        positional = [word for word in unrecognized if not word.startswith("-")]
        if words != argv and positional:  # `serve` was implied: the word meant a command
            raise unknown_command(positional[0], COMMANDS)
        parser.error(f"unrecognized arguments: {' '.join(unrecognized)}")
    if args.command == "check":
        return check(args.config_dir)
    if args.command == "usage":
        return usage_roll(args) if args.usage_command == "roll" else usage_export(args)
    if args.command == "schema":
        return schema()
    if args.command in ("db", "ledger"):
        return ledger_command(args)
    if args.command == "models":
        return models_check(args.config_dir)
    if args.command in cli_admin.COMMANDS:
        return cli_admin.run(args)
    if args.command in cli_control.COMMANDS:
        return cli_control.run(args)
    if args.command in cli_orgs.COMMANDS:
        return cli_orgs.run(args)
    if args.command in secrets.COMMANDS:
        return secrets.run(args)
    return serve(args)


def _with_default_command(argv: list[str]) -> list[str]:
    """``serve`` when no command is named (``gateway --demo`` is ``gateway serve --demo``)."""
    if any(word in COMMANDS for word in argv) or any(word in _OWN_OPTIONS for word in argv):
        return argv
    return ["serve", *argv]
