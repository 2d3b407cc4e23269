"""Worker processes for the primitives' invariant tests (run as a script).

claim URL WORKER [--die-after N]   claim batches of 100 'TODO' rows of `work`,
                                   record each in `processed`, mark them DONE;
                                   with --die-after, hang holding the N-th batch
seq URL NAME COUNT TIMES OUT       allocate COUNT numbers TIMES times into OUT
"""

from __future__ import annotations

import sys
import time

import bulkops


def claim(url: str, worker: int, die_after: int | None) -> None:
    policy = bulkops.RetryPolicy(attempts=200, base_delay=0.01, max_delay=0.2)
    with bulkops.connect(url, retry=policy) as db:
        for number, batch in enumerate(
            db.claim("work", where={"status": "TODO"}, chunk_size=100), start=1
        ):
            with batch:
                ids = [r["id"] for r in batch.rows]
                if die_after is not None and number == die_after:
                    print("holding " + ",".join(map(str, ids)), flush=True)
                    time.sleep(600)  # killed here, mid-batch
                db.insert("processed", [{"id": i, "worker": worker} for i in ids])
                db.update("work", [{"id": i, "status": "DONE"} for i in ids])
            print(f"batch {number}", flush=True)


def seq(url: str, name: str, count: int, times: int, out: str) -> None:
    with bulkops.connect(url) as db, open(out, "w") as f:
        sequence = db.sequence(name)
        for _ in range(times):
            f.write("\n".join(map(str, sequence.allocate_numbers(count))) + "\n")


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "claim":
        die = int(rest[2]) if len(rest) > 2 and rest[1] == "--die-after" else None
        claim(url, int(rest[0]), die)
    elif mode == "seq":
        seq(url, rest[0], int(rest[1]), int(rest[2]), rest[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
