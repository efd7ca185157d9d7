"""The usage roller's instructions per record folded and per run, counted by callgrind.

    python bench/roll_instructions.py [--records 2000] [--users 1] [--runs 20] [--idle-runs 200]

What moving ``gateway usage roll`` out of the serving process saves it, apart from the timing:
``gateway_instructions.py --b-env GATEWAY_USAGE_ROLL=0`` measures the whole difference, but
under valgrind the roller's run every 2 s falls on far fewer requests than at full speed. Here
one Python process (under ``valgrind --tool=callgrind``, a fresh redis-server beside it) adds
``--records`` chat-like usage records of ``--users`` users (and keys) to the usage stream as
the settle script does (an XADD each: the settle itself, whose batching varies from run to
run, is left out), in one chunk or ``--runs``, and folds them: not at all, in one run, in
``--runs`` runs (one after each chunk), or in one run followed by ``--idle-runs`` runs finding
nothing new.
The differences give the instructions per record folded, per run that folds something (its
claim, and the documents it reads, merges and writes) and per idle run. Needs valgrind and
redis-server.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# one process's work: settle the records in ``chunks`` (folding after each unless ``chunks`` is
# negative), then ``idle`` runs that find nothing new
WORK = """
import asyncio, sys, time
from gateway.config.model import Settings
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import encode
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.usage.rollup import Roller

async def main(url, users, records, chunks, idle):
    store = create_store(url, Settings())
    roller = Roller(store, time.time)
    now = time.time()
    raws = [encode(UsageRecord(
        ts=now - 60 + n / 1000, record_id=f"r{n}", request_id=f"req-{n}", user=f"user{n % users}",
        key_id=f"key{n % users}", tier="free", capability="chat", model="llama-3.1-8b",
        provider="together", upstream_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
        prompt_tokens=20, completion_tokens=120, cost_usd=0.0000252, charged_usd=0.0000252,
        latency_ms=180.0 + n % 300)) for n in range(records)]
    size = -(-records // abs(chunks))
    for first in range(0, records, size):
        async with store.client.pipeline(transaction=False) as pipe:
            for raw in raws[first:first + size]:
                pipe.xadd(keys.USAGE_STREAM, {"r": raw})
            await pipe.execute()
        if chunks > 0:
            await roller.run_once()
    for _ in range(idle):
        await roller.run_once()
    await store.aclose()

asyncio.run(main(*sys.argv[1:2], *map(int, sys.argv[2:])))
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--users", type=int, default=1, help="distinct users (and keys)")
    parser.add_argument("--runs", type=int, default=20, help="runs that fold them in chunks")
    parser.add_argument("--idle-runs", type=int, default=200)
    args = parser.parse_args(argv)
    valgrind, redis_server = shutil.which("valgrind"), shutil.which("redis-server")
    if valgrind is None or redis_server is None:
        raise SystemExit("needs valgrind and redis-server")
    n, k = args.records, args.runs

    def count(chunks: int, idle: int = 0) -> int:
        return _count(valgrind, redis_server, (args.users, n, chunks, idle))

    # each fold measured against the same records settled alike (in as many chunks), never
    # folded: one run costs per_run + n * per_record, k runs k * per_run + n * per_record
    at_once = count(1) - count(-1)
    in_runs = count(k) - count(-k)
    per_run = (in_runs - at_once) / (k - 1)
    per_record = (at_once - per_run) / n
    idle = count(1, args.idle_runs) - count(1)
    print(
        f"roll_instructions users={args.users} records={n} per_record_folded={per_record:.0f} "
        f"per_run_with_records={per_run:.0f} per_idle_run={idle / args.idle_runs:.0f}"
    )
    return 0


def _count(valgrind: str, redis_server: str, work_args: tuple[int, ...]) -> int:
    """Instructions of one process running ``WORK``, against a fresh redis-server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [redis_server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        with tempfile.TemporaryDirectory(prefix="roll-ir-") as tmp:
            out = Path(tmp) / "cg.out"
            subprocess.run(
                [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, "-c", WORK, f"redis://127.0.0.1:{port}/0",
                 *map(str, work_args)],
                check=True, capture_output=True, cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
            )  # fmt: skip
            summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
            assert summary is not None
            return int(summary.group(1))
    finally:
        server.terminate()
        server.wait()


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


if __name__ == "__main__":
    sys.exit(main())
