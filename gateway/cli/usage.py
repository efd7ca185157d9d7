"""``gateway usage export|roll``, ``db upgrade`` and ``ledger ship``: commands on usage records."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway.cli.base import (
    CommandFailed,
    UsageError,
    check_environment,
    check_extras,
    load_config,
)

if TYPE_CHECKING:  # imported when the command runs: the others start without them
    from prometheus_client import CollectorRegistry

    from gateway.store.redis.store import RedisStore
    from gateway.usage.analytics import RedisAnalytics


def usage_export(args: argparse.Namespace) -> int:
    """Print the usage records of [from, to) from Redis (and the ledger, when configured)."""
    from gateway.store.port import StoreError
    from gateway.usage.export import export_records, parse_range

    check_environment()
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
    config = load_config(args.config_dir)
    from gateway.ledger.settings import LedgerSettings

    ledger = LedgerSettings.from_env(file=config.ledger)  # DATABASE_URL: any date range
    reader = None
    if ledger.enabled:
        from gateway.ledger.commands import records_reader

        reader = records_reader(ledger)
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
    _write(output, args.output)
    return 0


def usage_roll(args: argparse.Namespace) -> int:
    """Fold new usage records into the rollups until stopped: the serving processes' background
    roller in a process of its own (they skip theirs with GATEWAY_USAGE_ROLL=0)."""
    from gateway.config.runtime import sentinel_url
    from gateway.store.factory import create_store
    from gateway.store.redis.store import RedisStore
    from gateway.usage.analytics import RedisAnalytics

    check_environment()
    redis_url = sentinel_url(os.environ) or os.environ.get("REDIS_URL")
    config = load_config(args.config_dir)
    store = create_store(redis_url, config.settings) if redis_url else None
    if not isinstance(store, RedisStore):
        raise CommandFailed("usage roll: REDIS_URL is not set: no usage stream to fold")
    _log_as_the_gateway_does()
    asyncio.run(_roll_until_stopped(RedisAnalytics(store), store))
    return 0


async def _roll_until_stopped(analytics: RedisAnalytics, store: RedisStore) -> None:
    """Fold every ``ROLLUP_INTERVAL_S`` until SIGTERM or SIGINT, which end it between runs,
    never inside one: a run cut after writing some documents but before moving the cursor is
    folded again, and its records count twice."""
    from gateway.usage.analytics import ROLLUP_INTERVAL_S

    stop = _stop_on_signals()
    try:
        while not stop.is_set():
            await analytics.roller.run_safely()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ROLLUP_INTERVAL_S)
    finally:
        await store.aclose()


def _log_as_the_gateway_does() -> None:
    """JSON lines on stderr at ``GATEWAY_LOG_LEVEL``, as ``gateway serve`` writes them: these
    commands run for as long as the serving processes, beside them."""
    from gateway.observe.logs import configure_logging

    configure_logging(os.environ.get("GATEWAY_LOG_LEVEL", "INFO"))


def _metrics_server(host: str, port: int | None) -> CollectorRegistry | None:
    """With a port: a registry served on ``host:port`` (any path answers, ``/metrics`` too) by
    a thread, for the shipper's metrics, which the ledger's alerts read."""
    if port is None:
        return None
    if not 0 < port <= 65535:
        raise UsageError(f"--metrics-port: {port} is not a port number (1-65535)")
    from prometheus_client import CollectorRegistry as Registry
    from prometheus_client import start_http_server

    registry = Registry()
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise CommandFailed(f"ledger ship: cannot listen on {host}:{port}: {error}") from None
    return registry


async def run_until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until SIGTERM or SIGINT, then cancel it (its cleanup runs): for a work
    that any cut leaves consistent, such as the ledger's shipper (nothing is acknowledged
    before its commit)."""
    stop = _stop_on_signals()
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    return stop


def _write(output: str | bytes, path: str | None) -> None:
    """To ``path`` or stdout; a workbook is bytes, never written to a terminal."""
    data = output.encode() if isinstance(output, str) else output
    if path is not None:
        with open(path, "wb") as out:
            out.write(data)
        return
    if isinstance(output, bytes) and sys.stdout.isatty():
        raise UsageError("--format xlsx writes a binary file: give --output FILE or redirect")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _tag_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    return args.tag, args.group_by


def ledger_command(args: argparse.Namespace) -> int:
    """``gateway db upgrade`` and ``gateway ledger ship`` (docs/ledger.md)."""
    from gateway.ledger.settings import LedgerSettings

    settings = LedgerSettings.from_env()
    if not settings.enabled:
        raise CommandFailed(f"{args.command}: DATABASE_URL is not set")
    check_extras()
    from gateway.ledger import commands
    from gateway.ledger.db import ERRORS

    try:
        if args.command == "db":
            applied = asyncio.run(commands.upgrade(settings))
            print("\n".join(f"applied {name}" for name in applied) or "up to date")
            return 0
        from gateway.config.runtime import sentinel_url
        from gateway.store.factory import create_store
        from gateway.store.redis.store import RedisStore

        redis_url = sentinel_url(os.environ) or os.environ.get("REDIS_URL")
        config = load_config(args.config_dir)  # tiers.yaml ``ledger:``, under the env's overrides
        store = create_store(redis_url, config.settings) if redis_url else None
        if not isinstance(store, RedisStore):
            raise CommandFailed("ledger ship: REDIS_URL is not set: no usage stream to ship")
        settings = LedgerSettings.from_env(file=config.ledger)
        registry = _metrics_server(args.metrics_host, args.metrics_port)
        _log_as_the_gateway_does()
        asyncio.run(run_until_signalled(commands.ship_forever(settings, store, registry)))
    except ERRORS as error:
        raise CommandFailed(f"{args.command}: Postgres: {type(error).__name__}: {error}") from None
    return 0
