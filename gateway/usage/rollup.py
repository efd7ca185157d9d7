"""Usage rollups: the usage stream folded into hourly and daily documents, off the hot path.

A ``Roller`` reads the records the stream gained since its cursor (oldest first, page by page,
up to the newest record when the run began: never a record twice), sums them per hour, day and
combination of dimensions over the whole run, and adds the sums to the stored rollup documents.
Nothing is added to a request's own path: the settle that wrote the record is unchanged; the
roller's cost is one stream read and one group addition per record, one addition per group
(hour, day and dimension values) and level, and per run one read and one write of each document
it touched (``CHUNK`` documents per round trip).

Exactly once across workers and replicas: a run claims the cursor it starts from
(``set_once`` on ``gw:roll:claim:<cursor>``); only the claimant folds the records after that
cursor, writes the documents and then moves the cursor. Runs are therefore serial (the next
claim needs the moved cursor), which is also what makes the documents' read-merge-write safe.
A process that dies after writing documents but before moving the cursor leaves its claim to
expire (``CLAIM_TTL_S``), and that range is folded again: the one case in which records count
twice.

Layout: one JSON document per level and hour or day (field ``p`` of the hash; no hash tag, so
they spread over a cluster's slots)::

    gw:roll:LEVEL:h:YYYYMMDDHH   {"<dims joined by SEP>": [n, e, f, p, c, u, {latency: n}]}
    gw:roll:LEVEL:d:YYYYMMDD     likewise, per UTC day
    gw:roll:u:USER:d:YYYYMMDD    level ``user``: one user's day, every other dimension (by
                                 day only: hours of one user are read from level ``full``)

per combination: requests, errors, fallbacks, prompt and completion tokens, list cost in
micro-USD, the latency histogram, then (for the monthly statements) the charged micro-USD and
the BYOK requests and tokens; an entry folded before those three existed reads as all charged,
none BYOK (``extras``). Latency bucket ``k`` holds latencies up to ``LATENCY_BASE ** k`` ms
(for the p95; the entry's positions and ``LATENCY_BASE`` are defined in ``roll_groups``).
``LEVEL`` names which dimensions are kept (``LEVELS``): ``coarse`` (tier, model, provider,
capability, status: small, for the overview), ``people`` (users, keys, tags, organizations and
teams), ``tags``, ``user`` (per user) and ``full`` (every dimension, the fallback). A query
reads the smallest level that has what it filters and groups by, so its cost follows the
combinations kept there, never the number of requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson

from gateway.metering.record import UsageRecord
from gateway.store.port import Store, StoreError
from gateway.usage.roll_groups import (
    BN,
    BT,
    DIMENSIONS,
    HIST,
    NONE,
    TEAMS,
    C,
    E,
    Entry,
    F,
    G,
    Group,
    N,
    P,
    U,
    dimension_tuple,
    group_records,
    group_stored,
)

logger = logging.getLogger("gateway.metering")

COARSE = ("tier", "model", "provider", "capability", "status")
# Each level keeps the dimensions named; a query reads the smallest level that has what it
# filters and groups by. "user" is kept per user (the user is in the key, not in the fields).
# ``TEAMS`` came last to the levels that end with them: a combination folded before has two
# values fewer, and reads as in no organization or team (``padded``).
LEVELS: dict[str, tuple[str, ...]] = {
    "coarse": COARSE,
    "people": ("user", "key_id", "tier", "capability", "status", "tag", *TEAMS),
    "tags": ("tag", "tier", "model", "provider", "capability", "status"),
    "user": ("key_id", "tier", "model", "provider", "capability", "status", "tag", *TEAMS),
    "full": DIMENSIONS,
}
PER_USER = "user"
HOUR_TTL_S = 40 * 86_400
DAY_TTL_S = 400 * 86_400
PAGE = 250  # records folded between awaits: a page is folded without yielding, so keep it short
CURSOR_KEY = "gw:roll:state"
CLAIM_TTL_S = 120
BUSY = -1
CHUNK = 200  # documents read, merged and written per round trip
FIELD = "p"
SEP = "\x1f"  # between the dimension values of a combination
USER = DIMENSIONS.index("user")
# per level, its dimension values out of a group's (``DIMENSIONS`` order), as a tuple
_PICKS: dict[str, Callable[..., Any]] = {
    level: itemgetter(*(DIMENSIONS.index(name) for name in names))
    for level, names in LEVELS.items()
}


def hour_key(level: str, hour: str) -> str:
    return f"gw:roll:{level}:h:{hour}"


def day_key(level: str, day: str, user: str = "") -> str:
    return f"gw:roll:{level}:d:{day}" if level != PER_USER else f"gw:roll:u:{user}:d:{day}"


def dimension_values(record: UsageRecord) -> dict[str, str]:
    """The record's value per dimension, as text without separators (``-`` when absent)."""
    return dict(zip(DIMENSIONS, dimension_tuple(record), strict=True))


def padded(level: str, parts: list[str]) -> list[str]:
    """A stored combination's values; one folded before its level kept ``TEAMS`` gets
    ``NONE`` for them (such records were rolled up without their organization and team)."""
    names = LEVELS[level]
    if names[-len(TEAMS) :] == TEAMS and len(parts) == len(names) - len(TEAMS):
        return [*parts, *(NONE for _ in TEAMS)]
    return parts


Document = dict[str, Entry]


def extras(entry: Entry) -> list[int]:
    """Charged micro-USD, BYOK requests and tokens; of an entry folded before they were kept:
    its list cost as charged, no BYOK."""
    if len(entry) > BT:
        return [entry[G], entry[BN], entry[BT]]
    return [entry[U], 0, 0]


def _copy(entry: Entry) -> Entry:
    return [*entry[:HIST], dict(entry[HIST]), *extras(entry)]


def _add_entry(into: Entry, entry: Entry) -> None:
    if len(into) <= BT:  # folded before the charged/BYOK sums: pad it as it was
        into[HIST + 1 :] = extras(into)
    for i in range(HIST):
        into[i] += entry[i]
    histogram = into[HIST]
    for bucket, count in entry[HIST].items():
        histogram[bucket] = histogram.get(bucket, 0) + count
    for i, value in zip((G, BN, BT), extras(entry), strict=True):
        into[i] += value


def merge(into: Document, other: Mapping[str, Entry]) -> None:
    """Add ``other``'s sums to ``into``, combination by combination."""
    for combo, entry in other.items():
        mine = into.get(combo)
        if mine is None:
            into[combo] = _copy(entry)
            continue
        _add_entry(mine, entry)


def fold(records: Iterable[UsageRecord], into: dict[str, Document]) -> None:
    """Add each record to the documents of every level, hourly and daily (key → document)."""
    _spread(group_records(records), into)


def fold_stored(raws: Iterable[bytes], into: dict[str, Document]) -> int:
    """``fold`` the records stored as ``raws`` (``roll_groups.group_stored``); the number
    folded (a value that is no record is skipped)."""
    groups, folded = group_stored(raws)
    _spread(groups, into)
    return folded


def _spread(groups: Mapping[Group, Entry], into: dict[str, Document]) -> None:
    """Add each group's sums to the documents of every level, hourly and daily.

    Records are summed per group (hour, day, dimension values) first, and each group is then
    spread over the levels once: a run's records from a few users and models cost one dict
    addition per record, not one per level and period. The documents of a (hour, day, user)
    are looked up once per run, not once per group."""
    targets: dict[tuple[str, str, str], list[tuple[Callable[..., Any], list[Document]]]] = {}
    for group, entry in groups.items():
        hour, day, values = group
        found = targets.get((hour, day, values[USER]))
        if found is None:
            found = targets[hour, day, values[USER]] = _targets(into, hour, day, values[USER])
        for pick, documents in found:
            combo = SEP.join(pick(values))
            for document in documents:
                mine = document.get(combo)
                if mine is None:
                    document[combo] = _copy(entry)
                elif len(mine) > BT:
                    _add_whole(mine, entry)
                else:
                    _add_entry(mine, entry)


def document_keys(groups: Iterable[Group]) -> list[str]:
    """The keys of the documents ``groups`` are spread over."""
    found: dict[str, None] = {}
    for hour, day, user in {(hour, day, values[USER]) for hour, day, values in groups}:
        for level in LEVELS:
            if level != PER_USER:
                found[hour_key(level, hour)] = None
            found[day_key(level, day, user)] = None
    return list(found)


def _targets(
    into: dict[str, Document], hour: str, day: str, user: str
) -> list[tuple[Callable[..., Any], list[Document]]]:
    """Per level, what picks its dimension values out of a group's, and its documents."""
    found = []
    for level, pick in _PICKS.items():
        hourly = () if level == PER_USER else (hour_key(level, hour),)
        found.append((pick, [into.setdefault(k, {}) for k in (*hourly, day_key(level, day, user))]))
    return found


def _add_whole(into: Entry, entry: Entry) -> None:
    """``_add_entry`` of two entries with every position (the run's own sums always have)."""
    into[N] += entry[N]
    into[E] += entry[E]
    into[F] += entry[F]
    into[P] += entry[P]
    into[C] += entry[C]
    into[U] += entry[U]
    histogram = into[HIST]
    for bucket, count in entry[HIST].items():
        histogram[bucket] = histogram.get(bucket, 0) + count
    into[G] += entry[G]
    into[BN] += entry[BN]
    into[BT] += entry[BT]


async def read_documents(store: Store, keys: Sequence[str]) -> list[bytes | None]:
    """The documents of ``keys``, ``CHUNK`` per round trip: one connection of the store's
    pool (shared with the request path, which must never wait for the dashboard) at a time."""
    found: list[bytes | None] = []
    for first in range(0, len(keys), CHUNK):
        found.extend(await store.get_documents(keys[first : first + CHUNK], FIELD))
    return found


def _ttl(key: str) -> int:
    return HOUR_TTL_S if ":h:" in key else DAY_TTL_S


def load_document(raw: bytes | None) -> Document:
    if not raw:
        return {}
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


class Roller:
    """Folds new usage records into the rollups; ``run_once`` from any number of processes."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    async def run_once(self) -> int:
        """Fold the records added since the cursor, if this process wins the claim on it;
        the number of records folded, or ``BUSY`` when another run holds the claim."""
        raw = await self._store.get_document(CURSOR_KEY, "cursor")
        cursor = raw.decode() if raw else ""
        newest = await self._store.records_page(None, 1)
        if not newest or (cursor and not _after(newest[0][0], cursor)):
            return 0
        if not await self._store.set_once(f"gw:roll:claim:{cursor or 'start'}", CLAIM_TTL_S):
            return BUSY
        top = newest[0][0]
        groups: dict[Group, Entry] = {}
        count = 0
        after = cursor or None
        while True:  # oldest first, up to the newest record when the run began
            raws, last = await self._store.records_after(after, top, PAGE)
            count += group_stored(raws, groups)[1]
            if len(raws) < PAGE:
                break
            after = last
        await self._write(groups)
        await self._store.put_document(CURSOR_KEY, "cursor", top.encode(), DAY_TTL_S)
        return count

    async def _write(self, groups: Mapping[Group, Entry]) -> None:
        """Add the run's sums to the stored documents: read them, spread the sums into them,
        write them back (the claim makes this run the only writer), ``CHUNK`` documents per
        round trip."""
        names = document_keys(groups)
        stored = await read_documents(self._store, names)
        documents = dict(zip(names, map(load_document, stored), strict=True))
        _spread(groups, documents)
        for first in range(0, len(names), CHUNK):
            chunk = names[first : first + CHUNK]
            writes = [(key, orjson.dumps(documents[key]), _ttl(key)) for key in chunk]
            await self._store.put_documents(FIELD, writes)

    async def run_safely(self) -> int:
        try:
            return await self.run_once()
        except StoreError as exc:
            logger.warning("rollup: store unavailable (%s); will retry", type(exc).__name__)
            return 0


def _after(entry: str, cursor: str) -> bool:
    return _id(entry) > _id(cursor)


def _id(entry: str) -> tuple[int, ...]:
    return tuple(map(int, entry.split("-")))
