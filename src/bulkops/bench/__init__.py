"""Built-in workloads: each one has a naive implementation (one query per row, as such
code is usually written) and one on bulkops' verbs, run on the same data.

``WORKLOADS`` is the registry ``bulkops bench`` runs from, in this order; a workload
joins by adding its ``Workload`` here (see ``bench/workload.py``).
"""

from __future__ import annotations

from . import escrow, kv, lots, orders, scores, users, views
from .workload import Workload

__all__ = ["WORKLOADS", "Workload"]

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        views.WORKLOAD,
        scores.WORKLOAD,
        orders.WORKLOAD,
        escrow.WORKLOAD,
        lots.WORKLOAD,
        users.WORKLOAD,
        kv.WORKLOAD,
    )
}
