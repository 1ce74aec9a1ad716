"""Profile the gateway under load with py-spy: where does an enrollment's time go?

``python -m bench.profile acme|scep [--seconds 20] [--concurrency 8] [--store postgresql]``

Starts a fresh gateway, drives it with the benchmark's own load generator and
samples the server process with ``py-spy record`` (pip package ``py-spy``; needs
ptrace rights, i.e. root or CAP_SYS_PTRACE). Writes the collapsed stacks to
``bench/results/profile-<protocol>.folded`` (input for any flame graph tool) and prints
the hottest frames by own time and by inclusive time, as ``function (file:line)``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .acme_client import AcmeWorker
from .gateway_setup import fresh_postgres_database, start_gateway
from .loop import Limits, Worker, timed_run
from .scep_load import ScepWorker, build_requests, device_keys, get_ca_certs
from .scep_message import recipient

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = str(Path(__file__).resolve().parent.parent)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for prefix in (ROOT + "/", str(Path(sys.prefix)) + "/lib/"):
        path = path.removeprefix(prefix)
    path = re.sub(r"^.*/site-packages/", "", path)
    return f"{m.group('func')} ({path}{':' + m.group('line') if m.group('line') else ''})"


def hot_spots(folded: Iterable[str], top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Own-time and inclusive-time shares per frame, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    ours_inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        if frames and frames[0].startswith("thread ("):
            thread = frames.pop(0)
            # name a thread by its outermost recognisable frame (main loop, aiosqlite worker...)
            threads[f"{thread} {frames[min(len(frames) - 1, 3)] if frames else ''}"] += count
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for function in {re.sub(r":\d+\)$", ")", f) for f in frames if "(gateway/" in f or "(protocols/" in f}:
            ours_inclusive[function] += count
        # the innermost frame that is the project's own code (gateway/ or protocols/)
        mine = next((f for f in reversed(frames) if "(gateway/" in f or "(protocols/" in f), None)
        if mine:
            ours[mine] += count
    share = lambda c: [(f, round(n / total * 100, 1)) for f, n in c.most_common(top)]
    return {"samples": [("total", float(total))], "threads": share(threads), "own": share(own),
            "inclusive": share(inclusive),
            "innermost_project_frame": share(ours), "project_inclusive": share(ours_inclusive)}


async def _drive(protocol: str, gw: Any, seconds: float, concurrency: int) -> None:
    limits = Limits(duration=seconds, max_ops=100_000, stall_timeout=15.0, warmup_per_worker=0)
    workers: list[Worker]
    if protocol == "acme":
        workers = [AcmeWorker(gw.acme_directory, gw.ssl_context(), f"prof-w{i}") for i in range(concurrency)]
    else:
        known = await get_ca_certs(gw.scep_url)
        queue = collections.deque(build_requests(device_keys(max(concurrency, 8) + 8),
                                                 int(seconds * 60) + concurrency, "prof", gw.scep_challenge,
                                                 recipient(known)))
        limits = Limits(duration=seconds, max_ops=len(queue) - concurrency, stall_timeout=15.0, warmup_per_worker=0)
        workers = [ScepWorker(gw.scep_url, queue) for _ in range(concurrency)]
    run = await timed_run(workers, limits, gw.pids)
    print(f"load: {len(run.artefacts)} {protocol} enrollments in {run.elapsed:.1f}s, {run.error_count} errors",
          file=sys.stderr)


async def profile(protocol: str, seconds: float, concurrency: int, store: str, out: Path,
                  gil: bool = False) -> dict[str, Any]:
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(fresh_postgres_database()) if store == "postgresql" else None
            gw = await start_gateway(workdir / "gw", acme=protocol == "acme", scep=protocol == "scep", store_url=url)
            stack.callback(gw.stop)
            # --subprocesses: with workers (the default on PostgreSQL) the serving processes
            # are children of ``gateway serve``, which itself only supervises them
            extra = ["--threads", "--full-filenames", "--subprocesses"] + (["--gil"] if gil else [])
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(gw.pid), "--duration", str(int(seconds) + 2), "--rate", "250",
                 "--format", "raw", "--output", str(out), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            await asyncio.sleep(1.0)  # py-spy attaches
            await _drive(protocol, gw, seconds, concurrency)
            _, err = await asyncio.to_thread(recorder.communicate, None, seconds + 60)
            if recorder.returncode != 0 or not out.exists():
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return hot_spots(out.read_text().splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("protocol", choices=["acme", "scep"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL "
                        "(Python CPU time; leaves out waits and C code that releases the GIL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{args.protocol}.folded"
    spots = asyncio.run(profile(args.protocol, args.seconds, args.concurrency, args.store, out, args.gil))
    print(f"{int(spots['samples'][0][1])} samples; collapsed stacks in {out}")
    for title, key in (("threads", "threads"), ("own time", "own"), ("inclusive time", "inclusive"),
                       ("project functions, inclusive time", "project_inclusive"),
                       ("innermost project frame (where our code hands off)", "innermost_project_frame")):
        print(f"\n== {title} (% of samples)")
        for frame, pct in spots[key][: args.top]:
            print(f"{pct:6.1f}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
