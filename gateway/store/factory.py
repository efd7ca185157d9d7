"""``create_store``: Redis (standalone or cluster) from a URL, or the memory store.

Cluster URLs: ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS), or any Redis URL
with ``?cluster=1``. Timeouts are short and redis-py's own retries are limited to one quick
reconnect, so an outage costs a request milliseconds, not seconds. The standalone pool blocks
(up to ``POOL_TIMEOUT_S``) rather than failing when all connections are busy; URL query
options such as ``?max_connections=128`` override the defaults. On a standalone Redis over
plain TCP the two per-request scripts go through one shared pipelined connection instead; on
a cluster over plain TCP, through one such connection per master, routed by slot.

Sentinel URLs: ``redis+sentinel://[user:password@]host:port,host:port/<master>[/<db>]`` (or
``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``, see ``config/runtime.py``); every connection,
the pipelined one included, asks the sentinels for the master when it (re)connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.config.model import Settings
from gateway.store.memory import MemoryStore
from gateway.store.port import Store
from gateway.store.redis.cluster_pipelined import ClusterPipelined
from gateway.store.redis.pipelined import (
    ConnectFailed,
    PipelinedConnection,
    RedisEndpoint,
    Resolver,
)
from gateway.store.redis.store import RedisStore

MAX_CONNECTIONS = 64  # a request waits up to POOL_TIMEOUT_S for a free connection
POOL_TIMEOUT_S = 2.0
CLUSTER_MAX_CONNECTIONS = 256  # per node; redis-py's cluster pool does not wait
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0
TRUE_VALUES = {"1", "true", "yes", "on"}


def create_store(redis_url: str | None, settings: Settings) -> Store:
    if not redis_url:
        return MemoryStore(stream_maxlen=settings.usage_stream_maxlen)
    if urlsplit(redis_url).scheme.endswith("+sentinel"):
        return _sentinel_store(SentinelUrl.parse(redis_url), settings)
    url, cluster = parse_redis_url(redis_url)
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 1),
    }
    maxlen = settings.usage_stream_maxlen
    if cluster:

        def cluster_client() -> RedisCluster:
            return RedisCluster.from_url(url, max_connections=CLUSTER_MAX_CONNECTIONS, **options)

        seed = _cluster_seed(url)
        scripts = ClusterPipelined(seed) if seed is not None else None
        return RedisStore(
            cluster_client(), stream_maxlen=maxlen, scripts=scripts, rebuild=cluster_client
        )
    pool = BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S, **options
    )
    return RedisStore(Redis.from_pool(pool), stream_maxlen=maxlen, scripts=_pipelined(pool))


@dataclass(frozen=True)
class SentinelUrl:
    """``redis+sentinel://[user:password@]host:port,host:port/<master>[/<db>]``: the master's
    credentials and database; the sentinels are asked without credentials."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.strip().rpartition(":")
            sentinels.append((name or host.strip(), int(port) if name else 26379))
        path = [part for part in parts.path.split("/") if part]
        if not path:
            raise ValueError("a sentinel URL names the master: redis+sentinel://hosts/<master>")
        return cls(
            sentinels=tuple(sentinels),
            master=unquote(path[0]),
            db=int(path[1]) if len(path) > 1 else 0,
            username=unquote(username) or None,
            password=unquote(password) if userinfo and password else None,
            tls=parts.scheme.startswith("rediss"),
        )


def _sentinel_store(url: SentinelUrl, settings: Settings) -> RedisStore:
    """redis-py's Sentinel client for everything, and the pipelined connection for the
    scripts, both asking the sentinels for the master whenever they (re)connect."""
    timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": SOCKET_TIMEOUT_S}
    # typed from redis-py 8 on; untyped before
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(url.sentinels),
        sentinel_kwargs=timeouts,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
    )
    client = sentinel.master_for(
        url.master,
        redis_class=Redis,
        db=url.db,
        username=url.username,
        password=url.password,
        ssl=url.tls,
        retry=Retry(NoBackoff(), 1),
        max_connections=MAX_CONNECTIONS,
    )
    scripts = None
    if not url.tls:
        endpoint = RedisEndpoint(
            host=url.sentinels[0][0],  # replaced by the master's address at each connect
            port=url.sentinels[0][1],
            db=url.db,
            username=url.username,
            password=url.password,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            command_timeout_s=SOCKET_TIMEOUT_S,
        )
        scripts = PipelinedConnection(endpoint, resolve=_master_of(sentinel, url.master))
    return RedisStore(client, stream_maxlen=settings.usage_stream_maxlen, scripts=scripts)


def _master_of(sentinel: Sentinel, master: str) -> Resolver:
    async def resolve(endpoint: RedisEndpoint) -> RedisEndpoint:
        try:
            host, port = await sentinel.discover_master(master)
        except RedisError as exc:
            raise ConnectFailed(f"no master {master!r} from the sentinels: {exc}") from exc
        return endpoint.at(str(host), int(port))

    return resolve


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
