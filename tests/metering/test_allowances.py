"""Level allowances: a busy level's window counters reserved ahead per process, on every store:
the requests they cover, the bound across two processes, the window roll, a dead process's
chunk swept back, and the 429 naming level and window once they run out."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from gateway.config.model import Config, Price
from gateway.errors import QuotaExceeded
from gateway.metering import Meter, allowance, allowance_writes, allowances, level_limits
from gateway.metering.level_limits import LEVEL_HEADER, WINDOW_HEADER
from gateway.metering.types import Admission, Check, LevelLimits, MeterRequest, Windowed
from gateway.metering.zoned_windows import zoned
from gateway.store.factory import create_store
from gateway.store.port import Counter, SettleBatch, Store

from .helpers import Clock, RedisServer, metered, ok, request, run

PRICE = Price(input=1_000.0)  # $0.001 a token: a 10-token prompt costs 10_000 micro-USD
EACH = 10_000


def ask(config: Config, levels: tuple[LevelLimits, ...], n: int, user: str = "u0") -> MeterRequest:
    asked = request(
        config, user=user, tier="premium", price=PRICE, request_id=f"r{n}", max_tokens=1
    )
    return replace(asked, levels=levels, generates_tokens=True, max_output_tokens=0)


async def served(meter: Meter, asked: MeterRequest) -> Admission | None:
    try:
        admitted = await meter.admit(asked)
    except QuotaExceeded:
        return None
    meter.finish(admitted, ok(10, 0, price=PRICE))
    return admitted


async def until_granted(meter: Meter, config: Config, levels: tuple[LevelLimits, ...]) -> int:
    """Requests until one is served from an allowance (HOT exact ones ask for it)."""
    for n in range(4 * allowances.HOT):
        admitted = await served(meter, ask(config, levels, n))
        assert admitted is not None
        if admitted.uses:
            return n + 1
        await asyncio.sleep(0.01)  # the grant's round trip
    raise AssertionError("no allowance was granted")


async def team_day(store: Store, clock: Clock, team: str = "ml") -> dict[str, int]:
    day = zoned("UTC", clock.now).day.id
    (values,) = await store.read_hashes([f"{level_limits.base('team', team)}:d:{day}"])
    return values


def test_a_busy_level_is_served_from_its_allowance_and_its_counter_ends_exact(
    config: Config, store_url: str | None
) -> None:
    team = LevelLimits(
        "team", "ml", usd=Windowed(day=10**9), requests=Windowed(day=10**6), max_parallel=10**6
    )
    clock = Clock()
    par = f"{level_limits.base('team', 'ml')}:par"

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            first = await until_granted(meter, config, (team,))
            assert first > allowances.HOT  # quiet levels are reserved exactly
            for n in range(20):
                admitted = await served(meter, ask(config, (team,), 100 + n))
                assert admitted is not None and admitted.uses
            await meter.settled()
            held = await team_day(store, clock)
            # while open, the counter reads the usage plus the allowance's unused part
            assert held["req"] > first + 20 and held["usd"] > (first + 20) * EACH
            assert (await store.read_hashes([par]))[0]["n"] > 0  # slots held ahead
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)  # idle: given back
            await meter.settled()
            assert await team_day(store, clock) == {"req": first + 20, "usd": (first + 20) * EACH}
            assert (await store.read_hashes([par]))[0].get("n", 0) == 0  # in flight: none

    run(scenario())


def test_an_open_allowance_counts_its_used_grants_once(
    config: Config, store_url: str | None
) -> None:
    """While an allowance serves a steady stream, its level's counter reads the usage plus the
    allowance's unused part and at most two grants more, not the usage twice (once written,
    once in the grants that covered it), and it ends exact."""
    team = LevelLimits("team", "ml", usd=Windowed(day=10**12), requests=Windowed(day=10**9))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            done = await until_granted(meter, config, (team,))
            for n in range(400):
                admitted = await served(meter, ask(config, (team,), 1000 + n))
                assert admitted is not None
                done += 1
                await asyncio.sleep(0)
                if n % 50 == 49:
                    await meter.settled()
                    await meter.settled()  # the grants used up end after the usage
                    counted = (await team_day(store, clock))["req"]
                    opened = list(meter.allowances._open.values())
                    if not opened:  # it ran out before a top-up came (a loaded host): exact
                        assert counted == done
                        continue
                    (held,) = opened
                    grant = max(chunk[0] for _, chunk in held.grants)
                    assert done + held.left[0] <= counted <= done + held.left[0] + 2 * grant
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            assert await team_day(store, clock) == {"req": done, "usd": done * EACH}

    run(scenario())


def test_a_window_roll_gives_the_allowance_back(config: Config, store_url: str | None) -> None:
    team = LevelLimits("team", "ml", requests=Windowed(minute=10**6, day=10**6))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            first = await until_granted(meter, config, (team,))
            minute = zoned("UTC", clock.now).minute
            clock.advance(60)  # another minute: another counter, so the allowance ends
            admitted = await served(meter, ask(config, (team,), 999))
            assert admitted is not None and not admitted.uses
            await meter.settled()
            key = level_limits.window_key("team", "ml", minute)
            assert (await store.read_hashes([key]))[0] == {"req": first}

    run(scenario())


def test_after_a_window_roll_the_next_allowance_is_asked_at_once(
    config: Config, store_url: str | None
) -> None:
    """A level whose allowance ended while busy (here its minute rolled) is still hot: the
    first request after the roll is reserved exactly and asks for the next allowance, so the
    one after it is served from that, not ``HOT`` exact reservations later."""
    team = LevelLimits("team", "ml", requests=Windowed(minute=10**6, day=10**6))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            first = await until_granted(meter, config, (team,))
            clock.advance(60)
            rolled = await served(meter, ask(config, (team,), 999))
            assert rolled is not None and not rolled.uses  # the new minute's first: exact
            await asyncio.sleep(0.05)  # the grant's round trip
            after = await served(meter, ask(config, (team,), 1000))
            assert after is not None and after.uses
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            minute = zoned("UTC", clock.now).minute
            key = level_limits.window_key("team", "ml", minute)
            assert (await store.read_hashes([key]))[0] == {"req": 2}
            assert (await team_day(store, clock)) == {"req": first + 2}

    run(scenario())


def test_an_allowance_ended_old_in_use_is_asked_again_at_once(config: Config) -> None:
    """Ended by ``tend`` for its age while still in use: the level stays hot, so the next
    request (exact) asks for the next allowance (memory store)."""
    team = LevelLimits("team", "ml", requests=Windowed(day=10**6))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (meter, _):
            await until_granted(meter, config, (team,))
            clock.advance(allowances.MAX_AGE_S - 0.2)
            used = await served(meter, ask(config, (team,), 200))  # not old yet
            assert used is not None and used.uses
            clock.advance(0.4)  # now old, and used within IDLE_S
            meter.allowances.tend(clock.now)
            assert not len(meter.allowances)
            exact = await served(meter, ask(config, (team,), 300))
            assert exact is not None and not exact.uses
            await asyncio.sleep(0.01)  # the grant
            after = await served(meter, ask(config, (team,), 301))
            assert after is not None and after.uses

    run(scenario())


def test_an_idle_end_leaves_the_level_to_be_hot_again(config: Config) -> None:
    """An allowance given back idle does not keep its level hot: the next requests are
    reserved exactly until ``HOT`` of them ask again (memory store)."""
    team = LevelLimits("team", "ml", requests=Windowed(day=10**6))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (meter, _):
            await until_granted(meter, config, (team,))
            clock.advance(2 * allowances.IDLE_S)
            meter.allowances.tend(clock.now)
            assert not len(meter.allowances)
            clock.advance(allowances.HOT_S)  # another bucket of the hot count
            assert await until_granted(meter, config, (team,)) > allowances.HOT

    run(scenario())


def test_an_organization_and_its_team_are_written_as_one_line_and_end_exact(
    config: Config, store_url: str | None
) -> None:
    """Requests served from both levels' allowances: each flush writes both levels' window
    usage as one shared aggregate (the same fields and sums), and every window of both levels
    ends at the usage once the allowances are back."""
    org = LevelLimits("org", "acme", requests=Windowed(minute=10**6, day=10**6))
    team = LevelLimits("team", "ml", requests=Windowed(minute=10**6, day=10**6))
    clock = Clock()
    levels = (org, team)

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            first = await until_granted(meter, config, levels)
            admitted = await served(meter, ask(config, levels, 100))
            assert admitted is not None and len(admitted.uses) == 2
            for n in range(10):
                assert await served(meter, ask(config, levels, 101 + n)) is not None
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            windows = zoned("UTC", clock.now)
            for level in levels:
                for window in (windows.minute, windows.day):
                    key = level_limits.window_key(level.level, level.id, window)
                    assert (await store.read_hashes([key]))[0] == {"req": first + 11}

    run(scenario())


def test_seal_joins_equal_sums_of_two_levels_and_keeps_unequal_ones_apart() -> None:
    org, team = (
        level_shape(level, name) for level, name in (("org", "gw:{o:acme}"), ("team", "gw:{tm:ml}"))
    )
    a, b = opened(org), opened(team)
    a.folded, b.folded = [1, 20, 0, 3, 0], [1, 20, 0, 3, 0]
    batch = a.queued = b.queued = SettleBatch(())
    allowance_writes.seal([a, b])
    (shared,) = batch.shared
    assert shared.keys == (*org.groups[0][0], *team.groups[0][0])
    assert shared.fields == ("req", "tok", "usd") and shared.values == (1, 20, 3)
    assert a.queued is b.queued is None and a.folded == b.folded == [0] * 5
    a.folded, b.folded = [1, 20, 0, 3, 0], [2, 40, 0, 6, 0]  # an allowance reopened meanwhile
    batch = a.queued = b.queued = SettleBatch(())
    allowance_writes.seal([a, b])
    assert [s.keys for s in batch.shared] == [org.groups[0][0], team.groups[0][0]]
    assert [s.values for s in batch.shared] == [(1, 20, 3), (2, 40, 6)]


def test_seal_joins_groups_of_one_field_too() -> None:
    """Ended allowances fold a slot back: their in-flight hashes (one field each) and their
    one-field window hashes are joined as well, each with its own values."""
    shapes = []
    for level, tag in (("org", "gw:{o:acme}"), ("team", "gw:{tm:ml}")):
        checks = [
            Check(f"{level}.minute.requests", Counter(f"{tag}:min:1", "req", 1, 10**9, ttl_s=9)),
            Check(f"{level}.parallel", Counter(f"{tag}:par", "n", 1, 10**6, sliding=True)),
        ]
        shapes += allowance.shapes(checks, frozenset(check.kind for check in checks))
    a, b = opened(shapes[0]), opened(shapes[1])
    a.open = b.open = False
    a.folded, b.folded = [1, 0, 0, 0, -1], [1, 0, 0, 0, -1]
    batch = a.queued = b.queued = SettleBatch(())
    allowance_writes.seal([a, b])
    written = sorted((shared.keys, shared.fields, shared.values) for shared in batch.shared)
    assert written == [
        (("gw:{o:acme}:min:1", "gw:{tm:ml}:min:1"), ("req",), (1,)),
        (("gw:{o:acme}:par", "gw:{tm:ml}:par"), ("n",), (-1,)),
    ]


def level_shape(level: str, tag: str) -> allowance.LevelShape:
    counters = []
    for window, ttl in (("min", 120), ("d", 90_000)):
        key = f"{tag}:{window}:1"
        for measure, field in (("requests", "req"), ("tokens", "tok"), ("usd", "usd")):
            counters.append(
                Check(f"{level}.{window}.{measure}", Counter(key, field, 1, 10**9, ttl_s=ttl))
            )
    kinds = frozenset(check.kind for check in counters)
    (shape,) = allowance.shapes(counters, kinds)
    return shape


def opened(shape: allowance.LevelShape) -> allowance.Allowance:
    return allowance.Allowance(shape, [], [0] * 5, [0] * 5, [0] * 5, [-1] * 5, [0] * 5, 0.0, 0.0)


def test_a_dead_processs_allowance_is_swept_back(config: Config, redis_url: str) -> None:
    team = LevelLimits("team", "ml", usd=Windowed(day=10**9))
    clock = Clock()

    async def dies() -> int:
        store = create_store(redis_url, config.settings)
        meter = Meter(config, store, clock=clock, lease_ttl_s=1, sweep_interval_s=0)
        await meter.start()
        first = await until_granted(meter, config, (team,))
        await meter.settled()
        return first  # no aclose: the loop ends and its tasks with it, the allowance held

    async def sweeps(first: int) -> None:
        async with metered(config, redis_url, clock=clock, sweep_interval_s=0) as (meter, store):
            assert (await team_day(store, clock))["usd"] > first * EACH
            for _ in range(100):
                if await meter.sweeper.sweep():
                    break
                await asyncio.sleep(0.05)  # until the lease's second has passed
            assert (await team_day(store, clock))["usd"] == first * EACH

    run(sweeps(run(dies())))


def test_two_processes_end_within_the_stated_bound(config: Config, store_url: str | None) -> None:
    """Two meters on one store, a team budget of 200 requests' cost and 300 asked for in
    bursts: never above the budget; once the allowances are given back, short of it by less
    than one request (the allowances' part of the bound is gone when they are)."""
    budget = 200 * EACH
    team = LevelLimits("team", "ml", usd=Windowed(day=budget))
    clock = Clock()

    async def scenario() -> None:
        async with (
            metered(config, store_url, clock=clock) as (a, store),
            metered(config, store_url, clock=clock) as (b, _),
        ):
            if store_url is None:  # the memory store is per process: one for both
                b = Meter(config, store, clock=clock)
                await b.start()
            meters, results, n = (a, b), [], 0
            for _ in range(15):
                burst = [served(meters[i % 2], ask(config, (team,), n + i, f"u{i % 4}"))
                         for i in range(20)]  # fmt: skip
                n += 20
                results += await asyncio.gather(*burst)
                assert (await team_day(store, clock)).get("usd", 0) <= budget
            assert any(r is not None and r.uses for r in results)
            for meter in meters:
                meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
                await meter.settled()
            spent = (await team_day(store, clock))["usd"]
            assert budget - EACH < spent <= budget
            assert spent == EACH * sum(r is not None for r in results)
            if store_url is None:
                await b.aclose()

    run(scenario())


def test_a_refusal_after_the_allowances_ran_out_names_the_level_and_window(
    config: Config, store_url: str | None
) -> None:
    team = LevelLimits("team", "ml", "Europe/Paris", usd=Windowed(month=100 * EACH))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, _):
            await until_granted(meter, config, (team,))
            refused = None
            for n in range(200):
                try:
                    admitted = await meter.admit(ask(config, (team,), 500 + n))
                except QuotaExceeded as exc:
                    refused = exc
                    break
                meter.finish(admitted, ok(10, 0, price=PRICE))
            assert refused is not None
            assert refused.headers[LEVEL_HEADER] == "team"
            assert refused.headers[WINDOW_HEADER] == "month"
            assert "Team 'ml'" in refused.message and "Europe/Paris" in refused.message

    run(scenario())


@pytest.mark.parametrize("seed", range(6))
def test_random_sizes_and_failures_never_pass_the_limit(config: Config, seed: int) -> None:
    """Random prompts (estimate = cost), failed answers and idle ends, memory store: the
    counter never passes its limit and ends at the usage once the allowances are back."""
    rng = random.Random(seed)
    budget = rng.randrange(150, 600) * EACH  # 100 to 400 requests' worth
    team = LevelLimits(
        "team", "ml", usd=Windowed(day=budget, month=budget + EACH), max_parallel=10**5
    )
    par = f"{level_limits.base('team', 'ml')}:par"
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (meter, store):
            spent = covered = 0
            for n in range(500):
                prompt = rng.randrange(1, 30)
                asked = replace(ask(config, (team,), n), prompt_tokens_estimate=prompt)
                try:
                    admitted = await meter.admit(asked)
                except QuotaExceeded:
                    continue
                covered += bool(admitted.uses)
                failed = rng.random() < 0.1
                outcome = ok(prompt, 0, price=PRICE, status=500 if failed else 200)
                meter.finish(admitted, outcome)
                spent += 0 if failed else prompt * 1_000
                if rng.random() < 0.05:
                    meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
                await asyncio.sleep(0)
                await meter.settled()
                assert (await team_day(store, clock)).get("usd", 0) <= budget
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            assert (await team_day(store, clock)).get("usd", 0) == spent <= budget
            assert (await store.read_hashes([par]))[0].get("n", 0) == 0
            assert covered > 0

    run(scenario())


@pytest.mark.parametrize("step_s", [0.0, 0.02])
def test_a_busy_allowance_is_topped_up_before_it_runs_out(config: Config, step_s: float) -> None:
    """At half its last chunk an allowance asks for another in the background (a lease of its
    own): a steady stream is served from it throughout (memory store: no round trip). A chunk
    used down to that mark within ``GROW_S`` of the ask before is followed by one twice its
    size, up to ``MAX_CHUNK`` requests' worth (no time passing: 32, 64, 128, 256, 256 ...);
    at 50 requests a second (0.02 s apart, half a chunk in 0.32 s) every chunk is ``CHUNK``
    requests' worth."""
    team = LevelLimits("team", "ml", usd=Windowed(day=10**9), requests=Windowed(minute=10**6))
    clock = Clock()
    count = 20 * allowances.CHUNK

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (meter, store):
            first = await until_granted(meter, config, (team,))
            taken = []
            for n in range(count):
                clock.advance(step_s)
                admitted = await served(meter, ask(config, (team,), 100 + n))
                assert admitted is not None
                taken.append(admitted.uses)
                await asyncio.sleep(0)  # the top-up's turn
            assert all(taken)
            (allowance,) = {use.allowance for uses in taken for use in uses}
            chunks = [chunk[0] for _, chunk in allowance.grants]  # requests' worth each
            if step_s:
                assert len(chunks) >= count // allowances.CHUNK
                assert set(chunks) == {allowances.CHUNK}
            else:
                most = allowances.MAX_CHUNK
                assert chunks[:5] == [32, 64, 128, most, most] and set(chunks[3:]) == {most}
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            used = first + count
            assert await team_day(store, clock) == {"usd": used * EACH}

    run(scenario())


def test_while_its_top_up_is_asked_an_allowance_is_taken_from_down_to_empty(
    config: Config,
) -> None:
    """Once an allowance has asked for its top-up, its mark is 0 until the chunk comes: the
    requests meanwhile are taken from it without asking again, and the chunk's arrival sets
    the mark at half the new chunk (memory store: the ask runs at the next turn)."""
    team = LevelLimits("team", "ml", usd=Windowed(day=10**9), requests=Windowed(minute=10**6))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (meter, store):
            first = await until_granted(meter, config, (team,))
            held = meter.allowances
            n = 0
            while not held._asking:  # no turn given: the ask waits for one
                admitted = await served(meter, ask(config, (team,), 100 + n))
                n += 1
                assert admitted is not None and admitted.uses
            (allowance,) = {use.allowance for use in admitted.uses}
            assert allowance.refill == [0, 0, 0, 0, 0] and len(held._tasks) == 1
            need = admitted.uses[0].need
            while True:  # down to empty, still from the allowance
                held.push()  # the joint's change written into ``left``
                if allowance.left[0] < 1 or allowance.left[3] < need[3]:
                    break
                admitted = await served(meter, ask(config, (team,), 100 + n))
                n += 1
                assert admitted is not None and allowance in {u.allowance for u in admitted.uses}
            assert len(held._tasks) == 1 and len(allowance.grants) == 1
            await asyncio.sleep(0)  # the top-up's turn
            await asyncio.sleep(0)
            assert len(allowance.grants) == 2 and not held._asking
            assert allowance.refill == [amount // 2 for amount in allowance.grants[1][1]]
            meter.allowances.tend(clock.now + 2 * allowances.IDLE_S)
            await meter.settled()
            assert await team_day(store, clock) == {"usd": (first + n) * EACH}

    run(scenario())


def test_a_top_up_refused_puts_the_mark_back_and_the_next_request_asks_again(
    config: Config,
) -> None:
    """Another process spends the level's budget while a top-up is asked: the ask is
    refused, the allowance's mark is back at half its chunk, and the next request below it
    asks again (one memory store for both meters)."""
    budget = 400 * EACH
    team = LevelLimits("team", "ml", usd=Windowed(day=budget))
    clock = Clock()

    async def scenario() -> None:
        async with metered(config, None, clock=clock) as (a, store):
            b = Meter(config, store, clock=clock)
            await b.start()
            await until_granted(a, config, (team,))
            held, n = a.allowances, 0
            while not held._asking:  # no turn given: the ask waits for one
                admitted = await served(a, ask(config, (team,), 1000 + n))
                n += 1
                assert admitted is not None and admitted.uses
            (allowance,) = {use.allowance for use in admitted.uses}
            chunk = allowance.grants[0][1]
            while await served(b, ask(config, (team,), n, f"b{n % 50}")) is not None:
                n += 1  # b spends the rest (its users' own limits far), none of its asks run
            await asyncio.sleep(0)  # a's ask runs and is refused
            assert not held._asking and len(allowance.grants) == 1 and allowance.open
            assert allowance.refill == [amount // 2 for amount in chunk]
            admitted = await served(a, ask(config, (team,), 1000 + n))
            assert admitted is not None and allowance in {u.allowance for u in admitted.uses}
            assert held._asking  # below its mark again: asked again
            await b.aclose()

    run(scenario())


def test_an_outage_admits_within_the_allowance_and_counts_its_usage_once_back(
    config: Config,
) -> None:
    """Redis stops while an allowance is open ("allow" policy): the requests it covers are
    admitted unchecked within it, and their level usage is written when the store returns
    (restarted empty: the counter then holds exactly their usage)."""
    team = LevelLimits("team", "ml", usd=Windowed(day=10**9))
    clock = Clock()
    with RedisServer() as server:

        async def scenario() -> None:
            async with metered(config, server.url, clock=clock) as (meter, store):
                await until_granted(meter, config, (team,))
                await meter.settled()
                server.stop()
                for n in range(5):
                    admitted = await served(meter, ask(config, (team,), 700 + n))
                    assert admitted is not None and admitted.uses and not admitted.granted
                server.start()  # same port, empty
                for _ in range(200):
                    if not meter.buffered_records:
                        break
                    await asyncio.sleep(0.05)
                assert (await team_day(store, clock))["usd"] == 5 * EACH

        run(scenario())
