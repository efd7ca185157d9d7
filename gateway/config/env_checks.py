"""The environment the gateway reads, checked: each problem names its variable (pure)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from gateway.config.key_env import key_variable, names_read
from gateway.config.model import Config

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
INTEGER_VARIABLES = ("GATEWAY_MAX_UPSTREAM_CONNECTIONS",)
# The ledger's whole-number variables (they override tiers.yaml ``ledger:``) → their minimum.
LEDGER_INTEGERS = {
    "GATEWAY_LEDGER_RETENTION_DAYS": 0,
    "GATEWAY_LEDGER_ROLLUP_RETENTION_DAYS": 0,
    "GATEWAY_LEDGER_BATCH": 1,
    "GATEWAY_LEDGER_CLAIM_IDLE_MS": 100,
    "GATEWAY_LEDGER_LINGER_MS": 0,
    "GATEWAY_LEDGER_STREAM_CAP": 1,
}
TRANSPORTS = ("native", "aiohttp", "httpx")
MIN_ADMIN_TOKEN_CHARS = 32  # a shorter one could be guessed online
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Names that look like an upstream's key or base URL variable.
_UPSTREAM_LIKE = re.compile(r"^[A-Z][A-Z0-9_]*_(API_KEY|BASE_URL)$")


def redis_url_problem(value: str) -> str | None:
    """Why ``value`` is not a Redis URL the gateway can use, or None."""
    if value.partition("://")[0] in SENTINEL_SCHEMES:
        return sentinel_url_problem(value)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return f"REDIS_URL: not a valid URL ({error})"
    if not parts.scheme:
        return (
            f"REDIS_URL: not a URL (no scheme); expected one of {', '.join(REDIS_SCHEMES)} "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    if parts.scheme not in REDIS_SCHEMES:
        return (
            f"REDIS_URL: scheme {parts.scheme or '(none)'!r} is not one of "
            f"{', '.join(REDIS_SCHEMES)} (e.g. redis://127.0.0.1:6379/0)"
        )
    if parts.scheme == "unix":
        return None if parts.path else "REDIS_URL: unix:// needs a socket path"
    if not parts.hostname:
        return "REDIS_URL: no host (e.g. redis://127.0.0.1:6379/0)"
    database = parts.path.strip("/")
    if database and not database.isdecimal():
        return f"REDIS_URL: database {database!r} is not a number"
    del port
    return None


def sentinel_url_problem(value: str) -> str | None:
    """``redis+sentinel://[user:password@]host:port,host:port/<master>[/<db>]``."""
    rest = value.partition("://")[2]
    hosts, _, path = rest.rpartition("@")[2].partition("/")
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        if not host.strip() or (name and not port.isdecimal()):
            return f"REDIS_URL: sentinel {host!r} is not host:port"
    master, _, database = path.partition("/")
    if not master:
        return "REDIS_URL: a sentinel URL names the master (redis+sentinel://hosts/mymaster)"
    if database.strip("/") and not database.strip("/").isdecimal():
        return f"REDIS_URL: database {database!r} is not a number"
    return None


def runtime_problems(env: Mapping[str, str]) -> list[str]:
    """Problems with the process options read from the environment (``Runtime.from_env``)."""
    problems = []
    redis_url = env.get("REDIS_URL")
    if env.get("REDIS_SENTINELS"):  # REDIS_URL then only lends credentials and database
        redis_url = f"redis+sentinel://{env['REDIS_SENTINELS']}/master"
    if redis_url and (problem := redis_url_problem(redis_url)):
        problems.append(problem)
    for name in INTEGER_VARIABLES:
        value = env.get(name)
        if value is not None and not (value.isdecimal() and int(value) > 0):
            problems.append(f"{name}: expected a positive whole number, got {value!r}")
    for name, minimum in LEDGER_INTEGERS.items():
        value = env.get(name, "").strip()
        if value and not (value.isdecimal() and int(value) >= minimum):
            problems.append(f"{name}: expected a whole number >= {minimum}, got {value!r}")
    transport = env.get("GATEWAY_UPSTREAM_TRANSPORT")
    if transport is not None and transport not in TRANSPORTS:
        problems.append(
            "GATEWAY_UPSTREAM_TRANSPORT: expected one of "
            f"{', '.join(TRANSPORTS)}, got {transport!r}"
        )
    admin_token = env.get("GATEWAY_ADMIN_TOKEN", "")
    if admin_token and len(admin_token) < MIN_ADMIN_TOKEN_CHARS:
        problems.append(
            f"GATEWAY_ADMIN_TOKEN: must be at least {MIN_ADMIN_TOKEN_CHARS} characters "
            f"(got {len(admin_token)}); make one with: openssl rand -hex 32"
        )
    level = env.get("GATEWAY_LOG_LEVEL")
    if level is not None and level.upper() not in LOG_LEVELS:
        problems.append(
            f"GATEWAY_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return problems


def upstream_warnings(
    config: Config, env: Mapping[str, str], stored: Collection[str] = ()
) -> list[str]:
    """Unset key and base-URL variables of each upstream, and variables that look like an
    upstream's but no upstream reads (a typo in a name, or in routes.yaml). An upstream in
    ``stored`` (it has stored system keys) needs no key variable."""
    warnings = []
    declared: set[str] = set()
    for upstream in config.upstreams.values():
        unset = []
        if upstream.api_key_env:
            declared.update(names_read(upstream.api_key_env))
            if not key_variable(env, upstream.api_key_env) and upstream.name not in stored:
                unset.append(
                    f"api_key_env {upstream.api_key_env} is unset (its models are skipped)"
                )
        if upstream.base_url_env:
            declared.add(upstream.base_url_env)
            if not env.get(upstream.base_url_env):
                unset.append(f"base_url_env {upstream.base_url_env} is unset ({upstream.base_url})")
        if unset:
            warnings.append(f"upstream {upstream.name}: " + "; ".join(unset))
    for variable in sorted(env):
        if _UPSTREAM_LIKE.match(variable) and variable not in declared:
            warnings.append(f"{variable} is set but no upstream in routes.yaml reads it")
    return warnings


def key_source_notes(config: Config) -> list[str]:
    """Which variable each upstream's key was read from (``gateway check`` prints them)."""
    notes = []
    for upstream in config.upstreams.values():
        source, name = upstream.api_key_source, upstream.api_key_env
        if source is not None:
            alias = f" (an alias of {name})" if source != name else ""
            notes.append(f"upstream {upstream.name}: key read from {source}{alias}")
    return notes
