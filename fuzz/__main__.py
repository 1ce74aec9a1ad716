"""``python -m fuzz``: run fuzz targets for a bounded time, one subprocess each.

Prints, per target, the inputs run, the time and the crashes found; exits 1 if any
target crashed, writing each crashing input to ``--crash-dir`` (default
``fuzz/crashes``, git-ignored) as ``<target>-crash-<sha1>``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .seeds import ROOT, MissingCaptures
from .targets import TARGETS, load

_PROGRESS = re.compile(r"^#\d+\s+(NEW|REDUCE|pulse|INITED|RELOAD)")
CRASH_DIR = Path(__file__).resolve().parent / "crashes"


def _write_seeds(name: str, corpus: Path) -> int:
    """The target's seeds as files in ``corpus``; returns the longest seed's length."""
    longest = 0
    for i, seed in enumerate(load(name).seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
        longest = max(longest, len(seed))
    return longest


def run_target(name: str, seconds: int, crash_dir: Path, corpus: Path | None) -> tuple[int, list[Path], float]:
    """(inputs run, crash files, seconds taken) of one bounded run of ``name``."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        work = corpus if corpus is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        longest = _write_seeds(name, work)
        before = set(crash_dir.glob(f"{name}-*"))
        args = [
            sys.executable, "-m", "fuzz._worker", name, str(work),
            f"-max_total_time={seconds}", "-timeout=20", "-rss_limit_mb=2048",
            f"-max_len={max(4096, longest + 1024)}", f"-artifact_prefix={crash_dir}/{name}-",
            "-print_final_stats=1",
        ]
        started = time.monotonic()
        proc = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
        took = time.monotonic() - started
    # libFuzzer's final stats on a timed run; the worker's own count when an input crashed
    counts = re.findall(r"^(?:stat::number_of_executed_units:|fuzz-inputs:)\s*(\d+)$", proc.stdout, re.M)
    inputs = max(map(int, counts), default=0)
    crashes = sorted(set(crash_dir.glob(f"{name}-*")) - before)
    if proc.returncode != 0:
        lines = [line for line in proc.stdout.splitlines() if not _PROGRESS.match(line)]
        tail = "\n".join(lines[-60:])
        print(f"--- {name}: exit {proc.returncode}\n{tail}", file=sys.stderr)
        if not crashes:  # a failure that wrote no input (import error, missing captures)
            crashes = [Path(f"<{name} exited {proc.returncode}, see above>")]
    return inputs, crashes, took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", help="a target name (see --list) or 'all'")
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--crash-dir", type=Path, default=CRASH_DIR, help="where crashing inputs go")
    parser.add_argument("--corpus", type=Path, help="keep the corpus in this directory (one target only)")
    args = parser.parse_args(argv)
    if args.list:
        for name in TARGETS:
            print(f"{name:15} {load(name).DESCRIPTION}")
        return 0
    if args.target is None:
        parser.error("give a target name, 'all' or --list")
    names = list(TARGETS) if args.target == "all" else [args.target]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r}; --list shows them")
    if args.corpus is not None and len(names) > 1:
        parser.error("--corpus takes one target")
    failed = False
    for name in names:
        try:
            inputs, crashes, took = run_target(name, args.seconds, args.crash_dir, args.corpus)
        except MissingCaptures as exc:
            print(f"fuzz: {exc}", file=sys.stderr)
            return 2
        failed = failed or bool(crashes)
        print(f"{name:15} inputs={inputs:<9} time={took:.0f}s crashes={len(crashes)}", flush=True)
        for path in crashes:
            print(f"  crash: {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
