"""``create_store``: Redis (standalone or cluster) from a URL, or the memory store.

Cluster URLs: ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS), or any Redis URL
with ``?cluster=1``. Timeouts are short and redis-py's own retries are limited to one quick
reconnect, so an outage costs a request milliseconds, not seconds. The standalone pool blocks
(up to ``POOL_TIMEOUT_S``) rather than failing when all connections are busy; URL query
options such as ``?max_connections=128`` override the defaults. On a standalone Redis over
plain TCP the two per-request scripts go through one shared pipelined connection instead; on
a cluster over plain TCP, through one such connection per master, routed by slot.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config.model import Settings
from gateway.metering.cluster_pipelined import ClusterPipelined
from gateway.metering.memory_store import MemoryStore
from gateway.metering.pipelined import PipelinedConnection, RedisEndpoint, ScriptRunner
from gateway.metering.redis_store import RedisStore
from gateway.metering.store import Store

MAX_CONNECTIONS = 64  # a request waits up to POOL_TIMEOUT_S for a free connection
POOL_TIMEOUT_S = 2.0
CLUSTER_MAX_CONNECTIONS = 256  # per node; redis-py's cluster pool does not wait
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
TRUE_VALUES = {"1", "true", "yes", "on"}


def create_store(redis_url: str | None, settings: Settings) -> Store:
    if not redis_url:
        return MemoryStore(stream_maxlen=settings.usage_stream_maxlen)
    url, cluster = parse_redis_url(redis_url)
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 1),
    }
    client: Redis | RedisCluster
    scripts: ScriptRunner | None = None
    if cluster:
        client = RedisCluster.from_url(url, max_connections=CLUSTER_MAX_CONNECTIONS, **options)
        seed = _cluster_seed(url)
        scripts = ClusterPipelined(seed) if seed is not None else None
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S, **options
        )
        client = Redis.from_pool(pool)
        scripts = _pipelined(pool)
    return RedisStore(client, stream_maxlen=settings.usage_stream_maxlen, scripts=scripts)


def _cluster_seed(url: str) -> RedisEndpoint | None:
    """The first node of a cluster URL, for the slot-routed hot-path connections (plain TCP
    only: with TLS the scripts stay on redis-py's cluster client)."""
    options: dict[str, Any] = dict(parse_url(url))
    if options.get("connection_class", Connection) is not Connection:
        return None
    return RedisEndpoint(
        host=options.get("host", "localhost"),
        port=int(options.get("port", 6379)),
        username=options.get("username"),
        password=options.get("password"),
        connect_timeout_s=CONNECT_TIMEOUT_S,
        command_timeout_s=SOCKET_TIMEOUT_S,
    )


def _pipelined(pool: BlockingConnectionPool) -> PipelinedConnection | None:
    """The shared connection for the hot-path scripts, on plain TCP (TLS and unix sockets
    stay on redis-py)."""
    if pool.connection_class is not Connection:
        return None
    options = pool.connection_kwargs
    endpoint = RedisEndpoint(
        host=options.get("host", "localhost"),
        port=int(options.get("port", 6379)),
        db=int(options.get("db", 0)),
        username=options.get("username"),
        password=options.get("password"),
        connect_timeout_s=CONNECT_TIMEOUT_S,
        command_timeout_s=SOCKET_TIMEOUT_S,
    )
    return PipelinedConnection(endpoint)


def parse_redis_url(redis_url: str) -> tuple[str, bool]:
    """Strip the cluster markers: ``(plain redis url, is_cluster)``."""
    parts = urlsplit(redis_url)
    scheme, cluster = parts.scheme, False
    if scheme.endswith("+cluster"):
        scheme, cluster = scheme.removesuffix("+cluster"), True
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "cluster":
            cluster = cluster or value.lower() in TRUE_VALUES
        else:
            query.append((name, value))
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(query))), cluster
