"""The timed window: N concurrent workers, bounded in count and time, with a watchdog.

One run = set up every worker (untimed: ACME accounts, SCEP CA certificates), one
warm-up operation per worker (untimed), then the timed window: each worker repeats
its operation until the window closes or the run's operation budget is spent. The
watchdog ends a run when nothing (success or error) completes for ``stall_timeout``
seconds, the way Pebble 2.4's deadlock shows itself (alive, 0% CPU, no answers); the
run is then reported as stalled with the rate up to its last completion.

Artefacts are only collected here; they are verified after the window, so the
verification's CPU never competes with the server being measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .procs import cpu_seconds


class Worker(Protocol):
    async def setup(self) -> None: ...
    async def issue(self, index: int) -> Any: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    duration: float  # seconds of timed window
    max_ops: int  # operations started in the window, at most
    stall_timeout: float = 6.0  # watchdog: nothing completed for this long ends the run
    warmup_per_worker: int = 1


@dataclass
class RawRun:
    """What one timed window produced, before verification."""

    concurrency: int
    artefacts: list[Any] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    error_count: int = 0
    error_samples: list[str] = field(default_factory=list)
    started: int = 0
    elapsed: float = 0.0
    stalled: bool = False
    stalled_phase: str | None = None
    server_cpu: float | None = None
    client_cpu: float = 0.0


class _Progress:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def tick(self) -> None:
        self.last = time.monotonic()


async def _supervise(tasks: Sequence[asyncio.Task[Any]], progress: _Progress, stall_timeout: float) -> bool:
    """Wait for the tasks; cancel them all when none progresses for stall_timeout. True = stalled."""
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.2)
        if pending and time.monotonic() - progress.last > stall_timeout:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return True
    return False


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


async def timed_run(
    workers: Sequence[Worker],
    limits: Limits,
    server_pids: Callable[[], Sequence[int]] = lambda: (),
) -> RawRun:
    """Run the workers through set-up, warm-up and the timed window; never raises for
    server misbehaviour (errors are counted, hangs end in a stalled run)."""
    run = RawRun(concurrency=len(workers))
    progress = _Progress()

    async def guarded(phase: str, make: Callable[[Worker], Awaitable[Any]]) -> bool:
        failures: list[BaseException] = []

        async def one(w: Worker) -> None:
            try:
                await make(w)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a server error during set-up is a finding, not a crash
                failures.append(exc)
            progress.tick()

        progress.tick()
        tasks = [asyncio.create_task(one(w)) for w in workers]
        if await _supervise(tasks, progress, limits.stall_timeout):
            run.stalled, run.stalled_phase = True, phase
            return False
        if failures:
            run.error_count += len(failures)
            run.error_samples.extend(f"{phase}: {_describe(e)}" for e in failures[:3])
            return False
        return True

    try:
        if not await guarded("setup", lambda w: w.setup()):
            return run

        async def warm(w: Worker) -> None:
            for i in range(limits.warmup_per_worker):
                await w.issue(-1 - i)

        if limits.warmup_per_worker and not await guarded("warm-up", warm):
            return run

        t0 = time.monotonic()
        deadline = t0 + limits.duration
        last_done = t0
        last_event = t0
        pids = list(server_pids())
        cpu0 = [cpu_seconds(p) for p in pids]
        client0 = time.process_time()

        async def loop(w: Worker) -> None:
            nonlocal last_done, last_event
            while time.monotonic() < deadline and run.started < limits.max_ops:
                run.started += 1
                index = run.started
                begin = time.monotonic()
                try:
                    artefact = await w.issue(index)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    run.error_count += 1
                    if len(run.error_samples) < 5:
                        run.error_samples.append(_describe(exc))
                else:
                    end = time.monotonic()
                    run.artefacts.append(artefact)
                    run.latencies.append(end - begin)
                    last_done = end
                progress.tick()
                last_event = time.monotonic()

        progress.tick()
        tasks = [asyncio.create_task(loop(w)) for w in workers]
        if await _supervise(tasks, progress, limits.stall_timeout):
            run.stalled, run.stalled_phase = True, "window"
            run.elapsed = last_done - t0
        else:
            run.elapsed = last_event - t0
        run.client_cpu = time.process_time() - client0
        used = [None if a is None or b is None else b - a for a, b in zip(cpu0, (cpu_seconds(p) for p in pids))]
        if used and all(u is not None for u in used):
            run.server_cpu = sum(u for u in used if u is not None)
        return run
    finally:
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
