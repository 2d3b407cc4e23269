"""A loader process for test_postgres_faults: ``python _pg_loader.py URL N CHUNK``.

Inserts rows with ids 1..N, in order, into table ``t`` (``id``, ``v``) with
``chunk_size=CHUNK``, and prints ``committed <chunks> <inserted>`` (flushed) after each
committed chunk, then ``done``. The test kills it with SIGKILL part way through.
"""

from __future__ import annotations

import sys

import bulkops


def main() -> None:
    url, n, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def progress(report: bulkops.Report) -> None:
        print(f"committed {report.chunks} {report.inserted}", flush=True)

    rows = ({"id": i, "v": f"row {i}"} for i in range(1, n + 1))
    with bulkops.connect(url) as db:
        db.insert("t", rows, chunk_size=chunk, progress=progress)
    print("done", flush=True)


if __name__ == "__main__":
    main()
