"""What every command shares: its two failures, the parser class and loading the config."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

from gateway.config.env_checks import runtime_problems
from gateway.config.model import Config
from gateway.config.reader import ConfigError
from gateway.extras import missing_extras
from gateway.secret import Secret

CONFIG_DIR_ENV = "GATEWAY_CONFIG_DIR"
USAGE_ERROR = 2
STARTUP_FAILURE = 3  # uvicorn's exit status too when a server could not start


class UsageError(Exception):
    """A wrong command line or environment value: one line, exit 2."""


class CommandFailed(Exception):
    """The command cannot do its job (e.g. no usage store): one line, exit 1."""


class StartupFailed(Exception):
    """The server could not start (e.g. its port is in use): one line, exit 3."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own message lists every choice; a mistyped command gets the closest one
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            raise unknown_command(value, action.choices, self.prog)
        super()._check_value(action, value)


def unknown_command(word: str, commands: Iterable[str], prog: str = "gateway") -> UsageError:
    """``unknown command 'keys lst' (did you mean 'keys list'?)``: the closest command, if any."""
    words = prog.split()[1:]  # the commands already given, e.g. ["keys"]
    named = " ".join([*words, word])
    close = difflib.get_close_matches(word, list(commands), n=1)
    if close:
        return UsageError(
            f"unknown command '{named}' (did you mean '{' '.join([*words, close[0]])}'?)"
        )
    return UsageError(f"unknown command '{named}' (see `{prog} --help`)")


def load_config(config_dir: str, demo_key: Secret | None = None) -> Config:
    """The serving config of ``config_dir``; an invalid one prints its problems, then fails."""
    from gateway.serving import load_serving_config

    try:
        return load_serving_config(config_dir, demo_key)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        raise CommandFailed(f"invalid config in {os.path.abspath(config_dir)}") from None


def environment_problems() -> list[str]:
    """The environment's values that are wrong, and the features it turns on whose extra
    (pyproject's optional dependencies) is not installed."""
    return runtime_problems(os.environ) + missing_extras(os.environ)


def check_environment() -> None:
    """Fail with every problem of the environment on one line."""
    problems = environment_problems()
    if problems:
        raise UsageError("; ".join(problems))


def check_extras() -> None:
    """Fail when a feature the environment turns on lacks its extra (e.g. DATABASE_URL)."""
    problems = missing_extras(os.environ)
    if problems:
        raise UsageError("; ".join(problems))
