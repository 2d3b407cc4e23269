"""Work done ahead by a thread of its own: ``plan.read_ahead`` (the CSV reader's
batches, the columnar path's prepared chunks into PostgreSQL) keeps the order, raises
an error in its place, and stops when its reader stops; the command's start leaves
numpy unloaded."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import bulkops
from bulkops import sources
from bulkops.errors import BulkError
from bulkops.plan import ReadAhead, read_ahead


def test_read_ahead_keeps_the_order_and_raises_in_place() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("third")

    got: list[int] = []
    with pytest.raises(ValueError, match="third"):
        for item in read_ahead(items(), 1, "test-ahead"):
            got.append(item)
    assert got == [1, 2]


def test_read_ahead_stops_when_its_reader_stops() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            made.append(i)
            yield i

    reader = read_ahead(items(), 2, "test-ahead-stop")
    assert next(reader) == 0
    reader.close()
    time.sleep(0.5)  # the thread sees the stop within its 0.1 s wait
    assert len(made) <= 5
    assert not any(t.name == "test-ahead-stop" for t in threading.enumerate())


def test_read_ahead_started_reads_before_it_is_asked_and_stop_waits_for_it() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            made.append(i)
            yield i

    early = ReadAhead(items(), 2, "test-ahead-early").start()
    deadline = time.monotonic() + 10
    while len(made) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert made[:3] == [0, 1, 2]  # two queued, one waiting for room: nothing asked yet
    early.stop()
    assert not any(t.name == "test-ahead-early" for t in threading.enumerate())
    assert len(made) <= 4


def test_a_csv_opened_for_the_columnar_path_is_parsed_before_it_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bulkops load`` opens its file before it loads the database driver, connects
    and looks the table up: pyarrow parses the first blocks meanwhile, so the first
    chunk is ready when the first write can start. Closing the file stops the reader
    first (nothing reads a closed file)."""
    path = tmp_path / "in.csv"
    with path.open("w") as f:
        f.write("id,v\n")
        f.writelines(f"{i},value-{i}\n" for i in range(200_000))  # about 3 MiB: 3 blocks
    parsed: list[int] = []
    clean = sources._clean_batches

    def counted(*args: Any) -> Iterator[Any]:
        for batch in clean(*args):
            parsed.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(sources, "_clean_batches", counted)
    source = sources.open_arrow(str(path))
    assert source is not None
    with source:
        deadline = time.monotonic() + 10
        while len(parsed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(parsed) >= 2  # not one batch asked for yet
        assert source.batches is not None
        got = source.batches.read_all()
    assert got.num_rows == 200_000 and sum(parsed) == 200_000
    assert got.column("id")[-1].as_py() == "199999"
    assert not any(t.name == "bulkops-csv-reader" for t in threading.enumerate())

    source = sources.open_arrow(str(path))  # closed without reading: the thread ends
    assert source is not None
    source.close()
    assert not any(t.name == "bulkops-csv-reader" for t in threading.enumerate())


def test_read_ahead_starts_at_once_and_stops_when_dropped() -> None:
    """The first items are made while the caller does something else (sync hashes its
    source while its digests are read); an iterator dropped unread stops its thread."""
    first = threading.Event()

    def items() -> Iterator[int]:
        for i in range(1000):
            first.set()
            yield i

    reader = read_ahead(items(), 2, "test-ahead-eager")
    assert first.wait(timeout=5)  # before any next()
    del reader
    time.sleep(0.5)
    assert not any(t.name == "test-ahead-eager" for t in threading.enumerate())


def _batches(n: int, fail_after: int | None = None) -> Iterator[pa.RecordBatch]:
    for start in range(0, n, 10):
        if fail_after is not None and start >= fail_after:
            raise BulkError(f"the input failed at row {start + 1}")
        ids = list(range(start + 1, start + 11))
        yield pa.record_batch([pa.array(ids), pa.array([f"v{i}" for i in ids])], ["id", "v"])


@pytest.mark.postgres
def test_postgres_chunks_prepared_ahead_commit_in_order(pg_url: str) -> None:
    """Chunks prepared one ahead: every chunk before an input error is committed, the
    error stops the call, and a bad row is still rejected with its row number."""
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    with bulkops.connect(pg_url) as db:
        db.create_table("t", {"id": "integer", "v": "text"}, ("id",))
        reader = pa.RecordBatchReader.from_batches(schema, _batches(100, fail_after=50))
        with pytest.raises(BulkError, match="row 51") as failed:
            db.insert("t", reader, chunk_size=20)
        report = failed.value.report
        assert report is not None
        assert report.inserted == 40  # two chunks of 20; the third never came
        table = pa.table({"id": pa.array(["41", "x", "43"]), "v": ["a", "b", "c"]})
        report = db.insert("t", table, on_error="isolate")
        assert (report.inserted, [r.row for r in report.rejections]) == (2, [2])
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*), max(id) FROM t").fetchone()
    assert row == (42, 43)


_OPEN_READ_ONE_AND_EXIT = """
import sys, threading
from bulkops.sources import open_arrow

for path in sys.argv[1:]:
    source = open_arrow(path)
    assert source is not None and source.batches is not None
    assert source.batches.read_next_batch().num_rows > 0
    source.close()
    assert not any(t.name == "bulkops-csv-reader" for t in threading.enumerate())
"""


def test_a_process_that_leaves_a_csv_early_exits_cleanly(tmp_path: Path) -> None:
    """pyarrow reads its input ahead on threads of its own. Given a Python file object
    (as it was, for byte counting and decompression), those threads call into the
    interpreter, and a process that closed a source before its end, then exited,
    often aborted ("PyGILState_Release ... finalizing") or hung in pyarrow's thread
    pool shutdown. Native streams (a file, gzip, a zip member) leave nothing to call."""
    line = b"%d,name number %d,%d.25,some text to make the rows longer\n"
    body = b"".join(line % (i, i, i) for i in range(100_000))  # about 6 MiB
    plain = tmp_path / "big.csv"
    # Larger than pyarrow's read-ahead (32 blocks of 1 MiB), so reading is under way.
    plain.write_bytes(b"id,name,amount,note\n" + body * 7)
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(gzip.compress(b"id,name,amount,note\n" + body, 1))
    zipped = tmp_path / "big.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("big.csv", b"id,name,amount,note\n" + body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONFAULTHANDLER": "1"}
    for run in range(10):
        done = subprocess.run(
            [sys.executable, "-c", _OPEN_READ_ONE_AND_EXIT, str(plain), str(gz), str(zipped)],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
        )
        assert done.returncode == 0, f"run {run}: exit {done.returncode}\n{done.stderr[-2000:]}"


@pytest.mark.parametrize(
    "name", ["p.csv", "p.csv.gz", "gzip-without-suffix.csv", "p.zip", "stored.zip", "p.bz2.zip"]
)
def test_columnar_progress_counts_the_batches_handed_out(tmp_path: Path, name: str) -> None:
    """pyarrow reads far ahead of the batches asked for: the progress is what was handed
    out (a block of text per batch, as bytes of the file on disk), not what it read.
    Every kind of input gives every row, in order."""
    data = b"id,v\n" + b"".join(b"%d,value number %d\n" % (i, i) for i in range(400_000))
    path = tmp_path / name
    if name.endswith(".zip"):
        method = {"stored.zip": zipfile.ZIP_STORED, "p.bz2.zip": zipfile.ZIP_BZIP2}
        with zipfile.ZipFile(path, "w", method.get(name, zipfile.ZIP_DEFLATED)) as archive:
            archive.writestr("p.csv", data)
    elif name != "p.csv":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    source = sources.open_arrow(str(path))
    assert source is not None and source.batches is not None and source.total_bytes
    with source:
        first = source.batches.read_next_batch()
        time.sleep(0.3)  # pyarrow reads ahead meanwhile (the whole file, at this size)
        # At most two blocks' share of the file (the first batch also holds the header).
        two_blocks = source.total_bytes * 2 * sources.ARROW_BLOCK_BYTES / len(data) + 1
        if name != "p.bz2.zip":  # read by the row reader, which counts what it read
            assert 0 < source.bytes_read() <= two_blocks
        rest = source.batches.read_all()
        assert source.bytes_read() == source.total_bytes
    ids = [*first.column("id").to_pylist(), *rest.column("id").to_pylist()]
    assert ids == [str(i) for i in range(400_000)]
