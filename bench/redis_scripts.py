"""Redis's instructions per reserve and per settled request, the scripts alone, by callgrind.

    python bench/redis_scripts.py [plain|limits|team] [--requests 200] [--batch 14] [--group 1]
        [--profile DIR]

Starts redis-server under ``valgrind --tool=callgrind`` and sends it what the gateway would for
``--requests`` chat requests of a key with no limits (``plain``), of a run-time key with its own
rpm, tpm and budgets (``limits``, ``meter_micro.KEY_LIMITS``) or of a key in a team in an
organization with every level limit set (``team``, ``meter_micro.LEVELS``): the reservations
one by one (``--group N``: N per call, as a busy gateway groups those of one turn), then their
settles in batches of ``--batch`` (group commit; ``--batch 1``: one request per settle, as at one
connection). ``--profile DIR`` keeps callgrind's files: one for the warm-up and reserves, one
for the settles (``callgrind_annotate``). Prints the
instructions per reservation and per settled request: no gateway, no HTTP, no rollup, so a
change to the scripts or their arguments shows alone. Needs valgrind and redis-server.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time

import redis
from meter_micro import BENCH_ENV, KEY_LIMITS, work_request
from procs import free_port
from services import CONFIG_DIR

from gateway.config.load import load_config
from gateway.metering import Outcome, counters
from gateway.metering.settle import settlement
from gateway.metering.types import Admission
from gateway.metering.windows import windows_at
from gateway.store import keys
from gateway.store.port import Lease
from gateway.store.redis import reserve_layout, scripts
from gateway.store.redis.reserve import _decision as reply_decision
from gateway.store.redis.reserve import split_replies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", default="team", choices=("plain", "limits", "team"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=14)
    parser.add_argument("--group", type=int, default=1, help="reservations per reserve call")
    parser.add_argument("--profile", default=None, help="keep callgrind's files in this folder")
    args = parser.parse_args()
    valgrind, server = shutil.which("valgrind"), shutil.which("redis-server")
    if valgrind is None or server is None:
        raise SystemExit("valgrind or redis-server is missing")
    config = load_config(str(CONFIG_DIR), BENCH_ENV)
    model = config.models["bench-json"]
    request = work_request(config, args.kind == "team")
    if args.kind == "limits":
        request.key_limits = KEY_LIMITS
    outcome = Outcome(
        status=200, model=model.name, provider=model.upstream.name,
        upstream_model=model.upstream_model, price=model.price, prompt_tokens=12,
        completion_tokens=8, latency_ms=1.0,
    )  # fmt: skip
    limits = counters.LimitCache(config)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gateway-scripts-ir-") as tmp:
        out = args.profile or tmp
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", server,
                "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(600):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)

            def reserve_group(numbers: range) -> list[Admission]:
                windows = windows_at(time.time())
                checks = counters.reservation(limits.get(request), request, windows)
                wanted = [check.counter for check in checks]
                form = scripts.reserve_args if len(numbers) == 1 else reserve_layout.layout_args
                calls = [
                    form(
                        wanted,
                        keys.user_overrides(request.user),
                        Lease(f"work.{number}", 900),
                        registry=True,
                    )
                    for number in numbers
                ]
                names, argv = (
                    calls[0] if len(calls) == 1 else reserve_layout.grouped_reserve_args(calls)
                )
                script = scripts.RESERVE.by_text if numbers[0] < 0 else scripts.RESERVE.by_sha
                reply = client.execute_command(*script(names, argv))
                replies = [reply] if len(calls) == 1 else split_replies(reply, len(calls))
                admissions = []
                for number, one in zip(numbers, replies, strict=True):
                    decision = reply_decision(one, wanted)
                    assert decision.ok, decision
                    admissions.append(Admission(
                        headers={}, clamp_max_tokens=None, request=request, started=windows.now,
                        checks=checks, granted=decision.granted, lease=f"work.{number}",
                    ))  # fmt: skip
                return admissions

            def reserve(number: int) -> Admission:
                return reserve_group(range(number, number + 1))[0]

            for number in range(20):  # warm: the script loaded, the keys made
                admission = reserve(-1 - number)
                batch = settlement(admission, outcome, f"w{number}").batch
                call = scripts.settle_call([batch], 1000, mark=None, stream=True, by_id=True)
                assert call is not None
                client.execute_command(*scripts.SETTLE.by_text(call.keys, call.args))
            before = _instructions(proc.pid)
            admissions = [
                admission
                for start in range(0, args.requests, args.group)
                for admission in reserve_group(range(start, min(start + args.group, args.requests)))
            ]
            reserved = _instructions(proc.pid)
            settling = reserved
            if args.profile:  # one file per phase: warm-up and reserves, then the settles
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True)
                settling = _instructions(proc.pid)  # (a dump zeroes the counts)
            for start in range(0, len(admissions), args.batch):
                batches = [
                    settlement(admission, outcome, f"r{start + i}").batch
                    for i, admission in enumerate(admissions[start : start + args.batch])
                ]
                call = scripts.settle_call(batches, 1000, mark=None, stream=True, by_id=True)
                assert call is not None
                client.execute_command(*scripts.SETTLE.by_sha(call.keys, call.args))
            settled = _instructions(proc.pid)
            print(
                f"redis_scripts kind={args.kind} requests={args.requests} group={args.group} "
                f"batch={args.batch} "
                f"reserve={(reserved - before) / args.requests:.0f} "
                f"settle={(settled - settling) / args.requests:.0f} "
                f"total={(reserved - before + settled - settling) / args.requests:.0f}"
            )
        finally:
            proc.terminate()
            proc.wait()
    return 0


def _instructions(pid: int) -> int:
    shown = subprocess.run(
        ["callgrind_control", "-e", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(count.replace(",", "")) for count in re.findall(r"Th \d+\s+([\d,]+)", shown))


if __name__ == "__main__":
    sys.exit(main())
