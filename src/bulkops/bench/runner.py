"""The bench runner: each workload, at each size, naive and bulkops, on fresh copies of
the same seeded data; statements counted and time taken for each; end states compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import WORKLOADS
from .sandbox import Sandbox, Target, open_sandbox
from .workload import Workload

__all__ = ["BenchResult", "Measurement", "run_bench", "select_workloads"]

IMPLEMENTATIONS = ("naive", "bulkops")


@dataclass(frozen=True)
class Measurement:
    """One implementation's run: statements sent and seconds taken (setup excluded)."""

    statements: int
    seconds: float


@dataclass(frozen=True)
class BenchResult:
    """One workload at one size on one backend, both implementations."""

    workload: str
    backend: str
    size: int
    naive: Measurement
    bulkops: Measurement
    same_end_state: bool
    difference: str | None = None  # where the end states part, when they do

    @property
    def reduction(self) -> float:
        """How many times fewer statements bulkops sent."""
        return self.naive.statements / max(self.bulkops.statements, 1)

    @property
    def speedup(self) -> float:
        return self.naive.seconds / self.bulkops.seconds if self.bulkops.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "backend": self.backend,
            "size": self.size,
            "naive": {"statements": self.naive.statements, "seconds": self.naive.seconds},
            "bulkops": {"statements": self.bulkops.statements, "seconds": self.bulkops.seconds},
            "reduction": round(self.reduction, 2),
            "speedup": round(self.speedup, 2),
            "same_end_state": self.same_end_state,
            "difference": self.difference,
        }


def select_workloads(names: Sequence[str] | None, backend: str) -> list[Workload]:
    """The workloads to run on ``backend``: those named (each must exist and run
    there), or every workload that runs there."""
    if not names:
        return [w for w in WORKLOADS.values() if backend in w.backends]
    chosen = []
    for name in names:
        found = WORKLOADS.get(name)
        if found is None:
            raise ValueError(f"no workload {name!r}; the workloads are {', '.join(WORKLOADS)}")
        if backend not in found.backends:
            # Capabilities names are also the URL schemes (sqlite, postgresql, dynamodb).
            schemes = " or ".join(f"{b}://" for b in sorted(found.backends))
            raise ValueError(
                f"workload {name!r} runs on {', '.join(sorted(found.backends))} only, not on "
                f"{backend}: give it a {schemes} database"
            )
        chosen.append(found)
    return chosen


def run_bench(
    url: str | None = None,
    *,
    workloads: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Run the workloads (default: all that run on this database) at ``sizes``
    (default: each workload's own) on ``url`` (default: a temporary SQLite database).
    ``progress`` is told what runs next."""
    if sizes is not None and any(size < 1 for size in sizes):
        raise ValueError("sizes must be at least 1")
    sandbox = open_sandbox(url)
    try:
        chosen = select_workloads(workloads, sandbox.backend)
        results = []
        for workload in chosen:
            for size in sizes or workload.sizes:
                if progress is not None:
                    progress(f"{workload.name} at size {size:,}")
                results.append(run_workload(sandbox, workload, size))
        return results
    finally:
        sandbox.close()


def run_workload(sandbox: Sandbox, workload: Workload, size: int) -> BenchResult:
    """Both implementations of ``workload`` at ``size``, each on its own fresh copy."""
    measured: dict[str, Measurement] = {}
    states: dict[str, Any] = {}
    for implementation in IMPLEMENTATIONS:
        with sandbox.target() as target:
            with target.connect() as db:
                workload.setup(db, target.plain, size)
            measured[implementation] = _measure(workload, implementation, target, size)
            states[implementation] = workload.check(target.plain)
    same = states["naive"] == states["bulkops"]
    return BenchResult(
        workload=workload.name,
        backend=sandbox.backend,
        size=size,
        naive=measured["naive"],
        bulkops=measured["bulkops"],
        same_end_state=same,
        difference=None if same else _difference(states["naive"], states["bulkops"]),
    )


def _measure(workload: Workload, implementation: str, target: Target, size: int) -> Measurement:
    counter = target.counter
    if implementation == "naive":
        counter.reset()
        started = time.perf_counter()
        workload.naive(target.plain, size)
        seconds = time.perf_counter() - started
    else:
        # Opening a Store sends nothing; it is opened outside the clock all the same.
        with target.connect() as db:
            counter.reset()
            started = time.perf_counter()
            workload.bulk(db, size)
            seconds = time.perf_counter() - started
    return Measurement(statements=counter.statements, seconds=seconds)


def _difference(naive: Any, bulk: Any) -> str:
    """Where two end states part first (for a person fixing a workload)."""
    if isinstance(naive, dict) and isinstance(bulk, dict):
        for key in sorted(set(naive) | set(bulk), key=str):
            if naive.get(key) != bulk.get(key):
                return f"{key}: {_difference(naive.get(key), bulk.get(key))}"
    if isinstance(naive, list | tuple) and isinstance(bulk, list | tuple):
        for i, (a, b) in enumerate(zip(naive, bulk, strict=False)):
            if a != b:
                return f"item {i}: naive {a!r}, bulkops {b!r}"
        if len(naive) != len(bulk):
            return f"naive has {len(naive)} items, bulkops {len(bulk)}"
    return f"naive {naive!r}, bulkops {bulk!r}"
