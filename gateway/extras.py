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

    def turned_on(self, env: Mapping[str, str]) -> bool:
        return bool(env.get(self.setting))


class Tracing(Extra):
    """OpenTelemetry: on with an OTLP endpoint (either variable), unless the standard
    variables turn the SDK or the trace exporter off."""

    VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

    @property
    def missing(self) -> str:
        return (
            f"{' or '.join(self.VARIABLES)} is set, so {self.feature} needs {self.module}, "
            f"which is not installed: pip install 'llm-gateway[{self.name}]' (or unset it)"
        )

    def variable(self, env: Mapping[str, str]) -> str | None:
        """The variable that turns tracing on, or None when it is off."""
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
            return None
        return next((name for name in self.VARIABLES if env.get(name, "").strip()), None)

    def turned_on(self, env: Mapping[str, str]) -> bool:
        return self.variable(env) is not None


POSTGRES = Extra("postgres", "asyncpg", "the usage ledger", "DATABASE_URL")
OTEL = Tracing(
    "otel", "opentelemetry.exporter.otlp.proto.http", "tracing", "OTEL_EXPORTER_OTLP_ENDPOINT"
)
EXTRAS: tuple[Extra, ...] = (POSTGRES, OTEL)


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
    return [extra.missing for extra in EXTRAS if extra.turned_on(env) and not installed(extra)]
