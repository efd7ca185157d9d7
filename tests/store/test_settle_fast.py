"""The common flush's own path (``settle_fast.py``) sends the very bytes ``scripts``' path does:
random flushes of requests of one or two forms (deltas through zero, watched fields, leases
merged by id, grants on hashes no increment writes, records with and without an index, marks
to forget, a level's shared write, an allowance's sealed batch) packed both ways, and compared
whole."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from gateway.store import keys
from gateway.store.port import (
    Increment,
    LeaseEnd,
    SettleBatch,
    SettleForm,
    SharedAggregate,
    StoreRejected,
)
from gateway.store.redis import scripts, settle_fast


def _forms(user: str, rng: random.Random) -> list[SettleForm]:
    own = (f"gw:{{u:{user}}}:d:1", f"gw:{{u:{user}}}:m:1")
    forms = []
    for charged in (True, False):
        slots = [(key, field, 100, False) for key in own for field in ("req", "tok", "usd")]
        slots += [("gw:{t:x}:d:1", "usd", 200, False)]
        if charged:
            slots += [("gw:spend:d:1", scope, 900, True) for scope in ("all", "x")]
        plain = len(slots)
        slots += [(f"gw:{{u:{user}}}:agg:1", field, 900, False) for field in ("n", "tok")]
        forms.append(SettleForm(tuple(slots), plain))
    return forms[: rng.randint(1, 2)]


def _batch(rng: random.Random, forms: list[SettleForm], number: int) -> SettleBatch:
    form = rng.choice(forms)
    zeros = rng.choice((0.0, 0.5, 1.0))
    deltas = tuple(
        0 if rng.random() < zeros else rng.choice((rng.randint(-30, 30), 10**6)) for _ in form.slots
    )
    user = form.slots[0][0]
    lease = f"l{rng.randrange(8)}" if rng.random() < 0.3 else f"l{number}"
    held: Any = None
    if rng.random() < 0.8:
        held = tuple(
            (key, field, rng.choice((1, 84, rng.randint(0, 10**6))), ttl)
            for key, field, ttl, watch in form.slots[: form.plain]
            if not watch and rng.random() < 0.7
        )
        if rng.random() < 0.2:
            held += (("gw:{o:o}:min:1", "req", 1, 60),)  # a hash no increment writes
        if rng.random() < 0.5:
            held *= rng.randint(2, 4)  # many grants: packed column by column
    leases = (LeaseEnd(keys.lease(user), lease, held),) if rng.random() < 0.9 else ()
    if leases and rng.random() < 0.5:
        leases += (LeaseEnd(keys.lease("gw:{t:x}:d:1"), lease, held and held[:1]),)
    index = rng.choice((keys.user_records(user, "1"), keys.user_records("other", "1"), None, ""))
    record = b"r%d" % number if rng.random() < 0.9 else None
    return SettleBatch((), record, (), leases, index, (), form, deltas)


def _with_shared(rng: random.Random, batches: list[SettleBatch]) -> bool:
    """A flush's level usage (an allowance's seal) in one of ``batches`` half the time: on
    hashes of its own (the fast path), or now and then on a hash the plan writes too, or in
    two batches on the same hashes (the general path); whether the fast path can take it."""
    if rng.random() < 0.5:
        return True
    shared = _shared(rng)
    twice = rng.random() < 0.1
    for at in rng.sample(range(len(batches)), min(len(batches), 1 + twice)):
        batches[at] = dataclasses.replace(batches[at], shared=shared)
    return not (twice and len(batches) > 1) and "gw:{t:x}:d:1" not in shared[0].keys


def _with_sealed(rng: random.Random, batches: list[SettleBatch]) -> bool:
    """An allowance's sealed batch (no form: grants given back spelled out, the levels' shared
    write, a lease end) added half the time: its increments on hashes of their own (the fast
    path), or now and then on a hash the plan writes, or on the shared write's (the general
    path); whether the fast path can take it."""
    if rng.random() < 0.5:
        return True
    shared = _shared(rng)
    own = ("gw:{o:o}:grant:1", "gw:{t:y}:grant:1")
    clash = rng.random()
    if clash < 0.1:
        own += ("gw:{t:x}:d:1",)  # also in the plan
    elif clash < 0.2:
        own += (shared[0].keys[0],)  # also in the shared write
    written = tuple(
        Increment(key, field, rng.choice((0, -3, rng.randint(1, 10**6))), 60, rng.random() < 0.2)
        for key in own
        for field in ("req", "tok")
    )
    lease = (LeaseEnd(keys.lease("gw:{o:o}:d:1"), "sealed", None),)
    batches.append(SettleBatch(written, None, (), lease, None, shared))
    hashes = set(shared[0].keys)
    earlier = [found.keys for batch in batches[:-1] for found in batch.shared]
    return clash >= 0.2 and "gw:{t:x}:d:1" not in hashes and all(map(hashes.isdisjoint, earlier))


def _shared(rng: random.Random) -> tuple[SharedAggregate, ...]:
    level = rng.choice(("gw:{o:o}", "gw:{t:y}"))
    hashes = tuple(f"{level}:{window}:1" for window in ("min", "h", "d", "mo"))
    if rng.random() < 0.1:
        hashes += ("gw:{t:x}:d:1",)  # also in the plan
    values = tuple(rng.choice((0, 0, 1, rng.randint(1, 10**6))) for _ in range(3))
    found = SharedAggregate(hashes, tuple(60 * (n + 1) for n in range(len(hashes))),
                            ("req", "tok", "usd"), values)  # fmt: skip
    return (found,)


def _packed(batches: list[SettleBatch], options: dict[str, Any]) -> Any:
    try:
        call = scripts.settle_call(batches, **options)
    except StoreRejected as error:
        return str(error)
    return None if call is None else (call.keys, call.args, list(call.watched))


@pytest.mark.parametrize("seed", range(8))
def test_the_common_flush_packs_what_the_general_path_packs(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    forms = _forms(f"f{seed}", rng)
    taken = with_shared = 0
    for round_ in range(60):
        batches = [_batch(rng, forms, round_ * 100 + n) for n in range(rng.randint(1, 20))]
        fits = _with_shared(rng, batches)
        fits = _with_sealed(rng, batches) and fits
        options = {
            "maxlen": rng.choice((1000, 5)),
            "mark": rng.choice((None, f"gw:settled:m{round_}")),
            "stream": rng.random() < 0.8,
            "by_id": rng.random() < 0.7,
            "forget": tuple(f"gw:settled:f{n}" for n in range(rng.choice((0, 0, 2)))),
        }
        for _ in range(2):  # the forms' plan made (forms of two seen twice)
            scripts.settle_call(batches, **options)
        fast_taken = settle_fast.call(batches, *options.values(), keys.SETTLED_MARK_S) is not False
        assert fast_taken or not fits  # (a clash of zero deltas is no clash: it may fit too)
        taken += fast_taken
        with_shared += fast_taken and any(batch.shared for batch in batches)
        fast = _packed(batches, options)
        with monkeypatch.context() as patched:
            patched.setattr(settle_fast, "call", lambda *args: False)
            general = _packed(batches, options)
        assert fast == general
    assert taken >= 25 and with_shared >= 10


@pytest.mark.parametrize("bad", ["3", 2.5])
def test_a_delta_that_is_no_integer_is_refused_however_the_batches_meet(bad: Any) -> None:
    """One form's requests summed per slot, one of them with a delta that is no integer: the
    call is refused (StoreRejected: the flusher then sets that record apart), never a
    TypeError that would stop the flusher."""
    form = _forms("bad", random.Random(0))[0]
    good = tuple(range(1, len(form.slots) + 1))
    broken = (bad, *good[1:])
    options = {"maxlen": 1000, "mark": None, "stream": True, "by_id": True}
    for deltas in ([good, broken], [broken, good], [broken], [broken, broken, good]):
        batches = [SettleBatch((), b"r", (), (), None, (), form, d) for d in deltas]
        for _ in range(2):  # before and after the form's plan is made
            with pytest.raises(StoreRejected):
                scripts.settle_call(batches, **options)
