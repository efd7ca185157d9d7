"""The Redis key layout, in one place.

One user's keys share the hash tag ``{u:<user>}`` and one tier's keys ``{t:<tier>}``, so each
group sits in one Redis Cluster slot and one Lua script may touch all of them.

==============================  ======  =====================================================
key                             type    fields
==============================  ======  =====================================================
gw:{u:USER}:d:YYYYMMDD          hash    ``<cap>:req``, ``<cap>:tok``, ``<cap>:ams``, ``usd``
gw:{u:USER}:m:YYYYMM            hash    ``usd``
gw:{u:USER}:ovr                 hash    store overrides: ``<cap>:req|tok|tpr|ams``,
                                        ``usd:day``, ``usd:month`` (integer units)
gw:{t:TIER}:d:YYYYMMDD          hash    ``usd`` (only kept when the tier has a budget)
gw:{t:TIER}:m:YYYYMM            hash    ``usd``
gw:{u:USER}:agg:YYYYMMDD        hash    per user and day: see ``AGGREGATE_FIELDS``
gw:agg:model:MODEL:YYYYMMDD     hash    per route model and day: likewise
gw:spend:d:YYYYMMDD             hash    charged spend: ``overall``, ``tier:<name>``
gw:spend:m:YYYYMM               hash    likewise, per month
gw:{u:USER}:cpw:MINUTE          hash    ``n``: the user's control-plane writes that minute
                                        (epoch minute), for their rate limit (expires 2 min)
gw:{u:USER}:videojobs           hash    video job id → JSON job record (expires 7 days after
                                        its last write)
gw:{u:USER}:videojob:JOB:done   string  the job was settled (once-only mark)
gw:{u:USER}:resp:ID             hash    ``r``: a stored Responses API response (JSON), its
                                        input and history; ``""`` once deleted
gw:alert:SCOPE:PERIOD:WINDOW    string  set once when an alert fired
gw:usage                        stream  one entry per request, field ``r`` = the record
                                        (compact JSON: ``record_codec``)
gw:{u:USER}:rec:YYYYMMDD        list    the user's stream entry ids that day (on a cluster the
                                        records themselves), for ``/v1/usage`` of one user;
                                        at most the stream's maxlen entries
gw:{TAG}:lease                  zset    leases of reservations in flight (on one Redis all of
                                        a reservation in its first counter's group, on a
                                        cluster one per slot it wrote to): lease
                                        id → deadline (Redis server time, epoch seconds)
gw:{TAG}:lease:d                hash    lease id → ``key\tfield\tamount`` lines it reserved
gw:leases                       zset    lease sorted sets → their next deadline (sweeper)
gw:{TAG}:settled:BATCH          string  a settle batch ran (once-only mark, short-lived)
==============================  ======  =====================================================

Units: ``req`` requests, ``tok`` tokens, ``ams`` audio milliseconds, ``usd`` micro-USD,
``tpr`` tokens per request.
"""

from __future__ import annotations

import functools

PREFIX = "gw"
USAGE_STREAM = f"{PREFIX}:usage"
LEASE_REGISTRY = f"{PREFIX}:leases"
REQUESTS, TOKENS, AUDIO_MS, TOKENS_PER_REQUEST = "req", "tok", "ams", "tpr"
USD = "usd"
# A settle batch's once-only mark must outlive any retry of the batch: a batch retried after
# its mark expired, whose first call did run, counts twice. Retries come seconds apart, but a
# store unreachable for longer keeps the batch buffered: a day.
SETTLED_MARK_S = 86_400
# Per-user day index lists live a month past their day (the usage stream is trimmed sooner).
INDEX_TTL_S = 32 * 86_400
USD_DAY, USD_MONTH = "usd:day", "usd:month"


def user_day(user: str, day: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:d:{day}"


def user_month(user: str, month: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:m:{month}"


def user_overrides(user: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:ovr"


def user_response(user: str, response_id: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:resp:{response_id}"


def user_video_jobs(user: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:videojobs"


def video_jobs_open() -> str:
    """Every metered video job not yet settled: ``job id\towner`` → last heartbeat (ms)."""
    return f"{PREFIX}:videojobs:open"


def video_job_settled(user: str, job_id: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:videojob:{job_id}:done"


def user_writes(user: str, minute: int) -> str:
    """The user's control-plane writes in one minute (``n``), for their rate limit."""
    return f"{PREFIX}:{{u:{user}}}:cpw:{minute}"


def user_aggregate(user: str, day: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:agg:{day}"


def tier_day(tier: str, day: str) -> str:
    return f"{PREFIX}:{{t:{tier}}}:d:{day}"


def tier_month(tier: str, month: str) -> str:
    return f"{PREFIX}:{{t:{tier}}}:m:{month}"


def model_aggregate(model: str, day: str) -> str:
    # no braces: the key must hash as a whole (it has no hash tag of its own)
    name = model.replace("{", "(").replace("}", ")")
    return f"{PREFIX}:agg:model:{name}:{day}"


def user_records(user: str, day: str) -> str:
    return f"{PREFIX}:{{u:{user}}}:rec:{day}"


def slot_tag(key: str) -> str:
    """What decides ``key``'s cluster slot: its hash tag, else the whole key."""
    return hash_tag(key) or key


@functools.lru_cache(maxsize=4096)
def lease(key: str) -> str:
    """The lease sorted set for a counter ``key``: in the same slot (hash tag). Cached: a
    request asks for it once per counter, twice (reserve and settle)."""
    return f"{PREFIX}:{{{slot_tag(key)}}}:lease"


def lease_data(lease_key: str) -> str:
    return f"{lease_key}:d"


def settled_mark(tag: str, batch_id: str) -> str:
    return f"{PREFIX}:{{{tag}}}:settled:{batch_id}"


def spend(period: str, window: str) -> str:
    """``period`` is ``d`` or ``m``."""
    return f"{PREFIX}:spend:{period}:{window}"


def alert_mark(scope: str, period: str, window: str) -> str:
    return f"{PREFIX}:alert:{scope}:{period}:{window}"


def capability_field(capability: str, unit: str) -> str:
    return f"{capability}:{unit}"


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes (``{...}``), as Redis defines it."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]
