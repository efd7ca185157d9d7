"""``gateway serve``: bind the port, load the config, hand both to uvicorn.

The port is bound before anything is printed (a port in use is the one error line); the dev
key of ``--demo`` is printed once the gateway listens."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import secrets
import shutil
import socket
import tempfile

from gateway.cli.base import StartupFailed, UsageError, check_environment, load_config
from gateway.cli.tls_options import tls_options
from gateway.http.serve_guard import GuardedConfig, ReadDeadlines
from gateway.observe.metrics import MULTIPROC_ENV
from gateway.secret import Secret

log = logging.getLogger("gateway")


def serve(args: argparse.Namespace) -> int:
    """Serve until stopped: 0, or ``StartupFailed`` when the server could not start."""
    check_environment()
    check_serve_options(args)
    sock = listening_socket(args.host, args.port)
    try:
        started = _serve_on(sock, args)
    finally:
        sock.close()
    if not started:
        raise StartupFailed("the gateway could not start (the log lines above say why)")
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket to serve on, bound; a port in use (or any failure to bind) is one line."""
    from gateway.serving import bind

    try:
        return bind(host, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise StartupFailed(
                f"port {port} is in use ({host}:{port}): stop what listens there or choose "
                "another --port"
            ) from None
        raise StartupFailed(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _serve_on(sock: socket.socket, args: argparse.Namespace) -> bool:
    from gateway.config.runtime import Runtime
    from gateway.observe.logs import configure_logging
    from gateway.serving import AppFactory, log_route_targets, run

    demo_key = Secret(f"sk-demo-{secrets.token_urlsafe(16)}") if args.demo else None
    config = load_config(args.config_dir, demo_key)
    log_level = os.environ.get("GATEWAY_LOG_LEVEL", "INFO")
    configure_logging(log_level)
    log_route_targets(args.config_dir, demo=demo_key is not None)
    port = sock.getsockname()[1]  # the port given, or the one chosen for --port 0

    def on_listening() -> None:
        log.info(
            "listening on %s:%d",
            args.host,
            port,
            extra={"fields": {"event": "listening", "host": args.host, "port": port}},
        )
        if demo_key is not None:
            print(demo_banner(args.host, port, demo_key), flush=True)

    multiproc_dir = prepare_multiprocess_metrics(args.workers)
    factory = AppFactory(
        os.path.abspath(args.config_dir),
        Runtime.from_env(),
        log_level,
        demo_key,
        # one worker rolls and ships; the others keep their CPU for requests
        background_lock=os.path.join(multiproc_dir, "background.lock") if multiproc_dir else None,
    )
    server_config = GuardedConfig(
        factory,  # handed to each worker whole (uvicorn pickles its config for spawned workers)
        read_deadlines=ReadDeadlines(
            args.header_timeout, args.body_timeout, args.body_idle_timeout
        ),
        factory=True,
        host=args.host,
        port=port,
        workers=args.workers,
        loop="uvloop",
        ws="none",  # the gateway serves no websockets
        access_log=False,
        **tls_options(args),
        server_header=False,
        log_config=None,
        timeout_graceful_shutdown=int(config.settings.shutdown_grace_s),
    )
    try:
        return run(server_config, sock, on_listening)
    except KeyboardInterrupt:
        return True
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


def check_serve_options(args: argparse.Namespace) -> None:
    """Fail on a port, worker count or read timeout out of range."""
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


def prepare_multiprocess_metrics(workers: int) -> str | None:
    """Several workers share counters through prometheus-client's multiprocess files. The
    library reads their directory from ``PROMETHEUS_MULTIPROC_DIR`` when imported, so that
    variable (and only that) is set here for the workers to inherit."""
    if workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path
