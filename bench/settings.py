"""How long and how often: the full run and the quick one (< 5 minutes on 2 cores)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    name: str
    window: float  # seconds of timed window per run
    repetitions: dict[int, int]  # concurrency -> alternating repetitions per contender
    max_ops: int  # operations per run, at most (bounds every loop)
    stall_timeout: float  # watchdog
    postgres_concurrencies: tuple[int, ...]  # where the ACME leg also runs on PostgreSQL
    memory_checkpoints: tuple[int, ...]  # issuances after which the gateway's RSS is read
    memory_time_limit: float  # seconds for the whole memory leg, at most
    ceiling_seconds: float
    concurrencies: tuple[int, ...] = (1, 8, 32)
    scep_max_ops: int = 3000  # prepared SCEP requests per run, at most
    notes: list[str] = field(default_factory=list)


FULL = Mode(
    name="full", window=10.0, repetitions={1: 5, 8: 5, 32: 5}, max_ops=50_000, stall_timeout=6.0,
    postgres_concurrencies=(1, 8, 32), memory_checkpoints=(1_000, 10_000, 30_000, 100_000), memory_time_limit=1800.0,
    ceiling_seconds=2.0, scep_max_ops=4000,
)

QUICK = Mode(
    name="quick", window=3.0, repetitions={1: 1, 8: 3, 32: 1}, max_ops=5_000, stall_timeout=4.0,
    postgres_concurrencies=(8,), memory_checkpoints=(150, 450), memory_time_limit=90.0,
    ceiling_seconds=1.0, scep_max_ops=400,
)
