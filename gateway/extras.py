"""The optional dependencies (pyproject's extras), each imported only when its feature is on.

Configured without its extra, the feature fails with one line naming what to install."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    name: str  # as in pip install 'llm-gateway[name]'
    module: str  # the module it installs
    feature: str  # what needs it
    setting: str  # the environment variable that turns the feature on

    @property
    def missing(self) -> str:
        """The problem when the feature is on and the module is not installed."""
        return (
            f"{self.setting} is set, so {self.feature} needs {self.module}, which is not "
            f"installed: pip install 'llm-gateway[{self.name}]'"
        )


POSTGRES = Extra("postgres", "asyncpg", "the usage ledger", "DATABASE_URL")
EXTRAS = (POSTGRES,)


class MissingExtra(ImportError):
    """A configured feature's extra is not installed (raised where the module is imported)."""

    def __init__(self, extra: Extra) -> None:
        super().__init__(extra.missing, name=extra.module)
        self.extra = extra


def installed(extra: Extra) -> bool:
    try:
        importlib.import_module(extra.module)
    except ImportError:
        return False
    return True


def missing_extras(env: Mapping[str, str]) -> list[str]:
    """A problem for each feature ``env`` turns on whose extra is not installed (each such
    extra is imported here: only those of the features turned on)."""
    return [extra.missing for extra in EXTRAS if env.get(extra.setting) and not installed(extra)]
