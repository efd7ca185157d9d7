"""Which environment variable holds an upstream's key: its ``api_key_env``, else an alias."""

from __future__ import annotations

from collections.abc import Mapping

# The integration plan names Together's key TOGETHER_AI_API_KEY; Together's own tools read
# TOGETHER_API_KEY. Either works; the configured name wins when both are set.
KEY_ENV_ALIASES: Mapping[str, tuple[str, ...]] = {"TOGETHER_API_KEY": ("TOGETHER_AI_API_KEY",)}


def key_variable(env: Mapping[str, str], name: str) -> str | None:
    """The variable ``name`` or one of its aliases that is set (non-empty), or None."""
    for candidate in (name, *KEY_ENV_ALIASES.get(name, ())):
        if env.get(candidate):
            return candidate
    return None


def names_read(name: str) -> tuple[str, ...]:
    """Every variable read for ``api_key_env: name``."""
    return (name, *KEY_ENV_ALIASES.get(name, ()))
