"""``bulkops bench --plot``: the speed-up of bulkops over naive code across sizes.

matplotlib is an optional extra (``pip install 'bulkops[plot]'``); only this module
imports it, and only when a plot is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .runner import BenchResult

__all__ = ["PlotUnavailable", "plot_speedups", "require_matplotlib"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    """The matplotlib Figure class, or PlotUnavailable saying how to get it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'bulkops[plot]'") from error
    return Figure


def plot_speedups(results: Sequence[BenchResult], path: str | os.PathLike[str]) -> None:
    """One line per workload: speed-up (naive time / bulkops time) against size."""
    figure_class = require_matplotlib()
    # A Figure on its own (no pyplot): no GUI backend, no global state.
    figure = figure_class(figsize=(8, 5), layout="constrained")
    axes = figure.subplots()
    by_workload: dict[str, list[BenchResult]] = {}
    for result in results:
        by_workload.setdefault(result.workload, []).append(result)
    for name, runs in by_workload.items():
        runs = sorted(runs, key=lambda r: r.size)
        axes.plot([r.size for r in runs], [r.speedup for r in runs], marker="o", label=name)
    backends = sorted({r.backend for r in results})
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.axhline(1, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("size (rows, orders, escrows, lots)")
    axes.set_ylabel("speed-up (naive time / bulkops time)")
    axes.set_title(f"bulkops bench on {', '.join(backends)}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)
