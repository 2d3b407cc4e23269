"""PostgreSQL fault tests against a real server: deadlocks, killed connections and
processes, bad rows, lock and statement timeouts, parallel workers.

Every fault is made deterministic: instead of sleeping and hoping, a test makes the
loader wait (on a row, table or advisory lock, or in a deferred trigger at COMMIT),
watches ``pg_stat_activity`` until it sees the loader waiting there, and only then
strikes. Loaders are told apart by ``application_name``.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import LockTimeoutError, StatementTimeoutError
from conftest import assert_accounted
from conftest import pg_execute as execute

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

LOADER = Path(__file__).with_name("_pg_loader.py")
GATE_LOCK = 4242  # advisory lock key the gate triggers wait on


# ------------------------------------------------------------------------ helpers


def connect(url: str, app: str, **connect_args: Any) -> bulkops.Store:
    """A Store whose connections show up as ``app`` in pg_stat_activity."""
    return bulkops.connect(url, connect_args={"application_name": app, **connect_args})


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def lock_waiters(conn: psycopg.Connection[Any], app: str, event: str | None = None) -> list[int]:
    """Backend pids of ``app`` waiting on a heavyweight lock (of kind ``event``)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock' AND (%s::text IS NULL OR wait_event = %s)",
        (app, event, event),
    ).fetchall()
    return [r[0] for r in rows]


def backends_of(conn: psycopg.Connection[Any], app: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
    ).fetchall()
    return [r[0] for r in rows]


def terminate(conn: psycopg.Connection[Any], pid: int) -> None:
    """pg_terminate_backend, waiting (up to 5 s) until the backend has exited."""
    row = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    assert row == (True,), f"could not terminate backend {pid}"


class Background:
    """Run ``fn`` in a thread; ``join`` returns its result or raises its exception."""

    def __init__(self, fn: Callable[[], Any], name: str = "background") -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as error:
            self.error = error

    def join(self, timeout: float = 30.0) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"{self.thread.name} did not finish within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.result


def add_gate(url: str, when: str, *, deferred: bool) -> None:
    """A trigger on ``t`` that waits for advisory lock GATE_LOCK at the row matching
    ``when``: half-way through the INSERT (before that row), or (``deferred``) at COMMIT."""
    execute(
        url,
        f"""CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_xact_lock_shared({GATE_LOCK}); RETURN NEW; END $$""",
        (
            "CREATE CONSTRAINT TRIGGER gate AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED "
            if deferred
            else "CREATE TRIGGER gate BEFORE INSERT ON t "
        )
        + f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION gate()",
    )


def ids_in(url: str) -> tuple[int, int, int, int]:
    """count, distinct ids, min id, max id of table t."""
    row = execute(url, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t")[0]
    return row[0], row[1], row[2] or 0, row[3] or 0


def load_rows(n: int) -> Iterator[dict[str, Any]]:
    return ({"id": i, "v": f"row {i}"} for i in range(1, n + 1))


# ---------------------------------------------- 1. concurrent upserts, opposite orders


def test_eight_threads_upserting_overlapping_keys_in_opposite_orders(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, w int NOT NULL, note text)")
    threads, span, step = 8, 300, 100  # thread w writes ids w*100+1 .. w*100+300
    keys = {w: range(w * step + 1, w * step + span + 1) for w in range(threads)}
    writers: dict[int, set[int]] = {}
    for w, ks in keys.items():
        for k in ks:
            writers.setdefault(k, set()).add(w)
    start = threading.Barrier(threads)

    def writer(w: int) -> bulkops.Report:
        order = keys[w] if w % 2 == 0 else reversed(keys[w])
        rows = [{"id": k, "w": w, "note": f"written by {w}"} for k in order]
        with connect(pg_url, f"upserter{w}") as db:
            start.wait(timeout=10)
            return db.upsert("t", rows, chunk_size=50)

    jobs = [Background(lambda w=w: writer(w), name=f"writer{w}") for w in range(threads)]
    reports = [job.join(timeout=45) for job in jobs]  # any exception is raised here

    for report in reports:
        assert_accounted(report, span)
        assert report.inserted + report.updated == span, report  # values always differ
        assert report.chunks == span // 50
    # Each key was inserted by exactly one writer and updated by the others.
    assert sum(r.inserted for r in reports) == len(writers)
    assert sum(r.updated for r in reports) == sum(len(ws) for ws in writers.values()) - len(writers)
    final = execute(pg_url, "SELECT id, w, note FROM t ORDER BY id")
    assert [r[0] for r in final] == sorted(writers)  # every key, exactly once
    for key, w, note in final:
        assert w in writers[key], (key, w, writers[key])
        assert note == f"written by {w}"
    retries = sum(r.retries for r in reports)
    print(f"\n8 concurrent upserters: {retries} retries in total")
    assert retries == 0  # sorted chunks lock in one order: no deadlock to retry


# ------------------------------------------------------------------- 2. a forced deadlock


@pytest.mark.parametrize("victim", ["bulkops", "other"])
def test_forced_deadlock_is_retried_and_both_sides_commit(pg_url: str, victim: str) -> None:
    """Session A locks row 2; bulkops upserts rows 1 and 2 (key order: it locks row 1,
    then waits for row 2); A then asks for row 1: a deadlock. The server's deadlock check
    runs in whichever waiter reaches its deadlock_timeout first while the cycle exists,
    so giving one side a long deadlock_timeout decides the victim deterministically."""
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old'), (2, 'old')",
    )
    bulk_timeout, other_timeout = ("300ms", "60s") if victim == "bulkops" else ("60s", "100ms")
    with (
        connect(pg_url, "deadlocker", options=f"-c deadlock_timeout={bulk_timeout}") as db,
        psycopg.connect(pg_url, options=f"-c deadlock_timeout={other_timeout}") as a,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        a.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        job = Background(lambda: db.upsert("t", [{"id": 2, "v": "bulk"}, {"id": 1, "v": "bulk"}]))
        wait_until(lambda: lock_waiters(watch, "deadlocker"), "bulkops to wait for row 2")
        a_attempts = 0
        while True:  # session A retries its own transaction if it is the victim
            a_attempts += 1
            try:
                a.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
                a.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
                a.execute("UPDATE t SET v = 'A' WHERE id IN (1, 2)")
                a.commit()
                break
            except psycopg.errors.DeadlockDetected:
                a.rollback()
                assert a_attempts < 5
        report = job.join()

    assert_accounted(report, 2)
    final = dict(execute(pg_url, "SELECT id, v FROM t"))
    if victim == "bulkops":
        # bulkops was aborted, retried after A committed, and wrote last.
        assert report.retries >= 1, report
        assert a_attempts == 1
        assert final == {1: "bulk", 2: "bulk"}
    else:
        # A was aborted (more than once when its retry locks row 2 again before bulkops
        # wakes: a row whose locker aborted is free to whoever asks first); bulkops was
        # never the victim, committed first, and A's last retry wrote last.
        assert report.retries == 0, report
        assert a_attempts >= 2
        assert final == {1: "A", 2: "A"}
    assert report.updated == 2


# -------------------------------------------- 3. the loader's backend terminated mid-load


@pytest.mark.parametrize("phase", ["between_chunks", "mid_statement", "in_commit"])
def test_terminated_backend_reconnects_and_completes_exactly_once(pg_url: str, phase: str) -> None:
    """pg_terminate_backend on the loader's connection after 5 of 50 chunks: between two
    chunks, while its INSERT waits for a table lock, or while its COMMIT runs a deferred
    trigger. The chunk is retried on a new connection; no row is lost or doubled."""
    n, chunk = 50_000, 1000
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    if phase == "in_commit":
        add_gate(pg_url, "NEW.id = 5500", deferred=True)  # chunk 6 waits in COMMIT
    terminated: list[int] = []
    with (
        connect(pg_url, "loader") as db,
        psycopg.connect(pg_url, autocommit=True) as ctl,
        psycopg.connect(pg_url, autocommit=True) as blocker,
    ):
        if phase == "in_commit":
            blocker.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        first_pid = db.backend.conn.info.backend_pid  # type: ignore[attr-defined]
        watcher: Background | None = None

        def strike(event: str, release: Callable[[], None]) -> None:
            try:
                waiting = wait_until(lambda: lock_waiters(ctl, "loader", event), "a wait")
                terminate(ctl, waiting[0])
                terminated.append(waiting[0])
            finally:
                release()

        def progress(report: bulkops.Report) -> None:
            nonlocal watcher
            if report.chunks != 5:
                return
            if phase == "between_chunks":
                pid = db.backend.conn.info.backend_pid  # type: ignore[attr-defined]
                terminate(ctl, pid)
                terminated.append(pid)
            elif phase == "mid_statement":
                # Chunk 6's INSERT will wait for this lock (COPY into the stage will not).
                blocker.execute("BEGIN")
                blocker.execute("LOCK TABLE t IN SHARE MODE")
                watcher = Background(
                    lambda: strike("relation", lambda: blocker.execute("ROLLBACK"))
                )

        if phase == "in_commit":
            watcher = Background(
                lambda: strike(
                    "advisory",
                    lambda: blocker.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,)),
                )
            )
        report = db.insert("t", load_rows(n), chunk_size=chunk, progress=progress)
        if watcher is not None:
            watcher.join()
        assert terminated, "the loader's backend was never terminated"
        assert terminated[0] == first_pid
        assert db.backend.conn.info.backend_pid != first_pid  # type: ignore[attr-defined]

    assert report.retries >= 1, report
    assert_accounted(report, n)
    assert report.inserted == n
    assert report.chunks == n // chunk
    assert ids_in(pg_url) == (n, n, 1, n)


# ------------------------------------------ 3b. connection lost around a server-side COMMIT


class Proxy:
    """A TCP proxy in front of the server that can cut connections at chosen points.

    It parses the server's messages (type byte, 4-byte length), so it can drop the
    connection exactly when the reply to a COMMIT (CommandComplete "COMMIT") comes back:
    the transaction is committed on the server but the client never hears so.
    Clients must connect with sslmode=disable (no SSLRequest byte to parse around).
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._drop_commit_reply = False
        self.dropped = threading.Event()
        self._spawn(self._accept)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def url(self, pg_url: str, app: str) -> str:
        info = conninfo_to_dict(pg_url)
        return (
            f"postgresql://{info['user']}@127.0.0.1:{self.port}/{info['dbname']}"
            f"?sslmode=disable&gssencmode=disable&application_name={app}"
        )

    def drop_next_commit_reply(self) -> None:
        with self._lock:
            self._drop_commit_reply = True

    def cut_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._cut(*pair)

    def close(self) -> None:
        self._closing.set()
        self.cut_all()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _cut(client: socket.socket, server: socket.socket) -> None:
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
                self._pairs.append((client, server))
            self._spawn(self._upstream, client, server)
            self._spawn(self._downstream, client, server)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
        self._cut(client, server)

    def _downstream(self, client: socket.socket, server: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                buffer += data
                out = []
                while len(buffer) >= 5:
                    end = 1 + int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < end:
                        break
                    message, buffer = buffer[:end], buffer[end:]
                    if message[:1] == b"C" and message[5:].startswith(b"COMMIT\x00"):
                        with self._lock:
                            drop, self._drop_commit_reply = self._drop_commit_reply, False
                        if drop:
                            self.dropped.set()
                            self._cut(client, server)
                            return
                    out.append(message)
                client.sendall(b"".join(out))
        self._cut(client, server)


def test_commit_reply_lost_after_server_committed_is_not_applied_twice(
    pg_cluster: Any, pg_url: str
) -> None:
    """The server commits chunk 6, but the connection drops before the client hears so:
    bulkops must ask txid_status, see "committed", and not write the chunk again."""
    n, chunk = 20_000, 1000
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    with (
        Proxy("127.0.0.1", pg_cluster.port) as proxy,
        bulkops.connect(proxy.url(pg_url, "loader")) as db,
    ):
        first_pid = db.backend.conn.info.backend_pid  # type: ignore[attr-defined]

        def progress(report: bulkops.Report) -> None:
            if report.chunks == 5:
                proxy.drop_next_commit_reply()

        report = db.insert("t", load_rows(n), chunk_size=chunk, progress=progress)
        assert proxy.dropped.is_set(), "the COMMIT reply was never dropped"
        assert db.backend.conn.info.backend_pid != first_pid  # type: ignore[attr-defined]

    assert_accounted(report, n)
    assert report.inserted == n
    assert report.chunks == n // chunk
    assert ids_in(pg_url) == (n, n, 1, n)


def test_connection_lost_while_commit_still_in_progress_is_not_applied_twice(
    pg_cluster: Any, pg_url: str
) -> None:
    """The connection drops while the server is still working on chunk 6's COMMIT (held
    here in a deferred trigger; in production e.g. a COMMIT waiting for a synchronous
    standby), and that COMMIT completes later. txid_status says "in progress" at first,
    which is not "not committed": writing the chunk again in a new transaction applies
    it twice (here: its rows meet the first transaction's and the load fails)."""
    n, chunk = 50_000, 1000
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    add_gate(pg_url, "NEW.id = 5500", deferred=True)
    with (
        Proxy("127.0.0.1", pg_cluster.port) as proxy,
        psycopg.connect(pg_url, autocommit=True) as ctl,
        psycopg.connect(pg_url, autocommit=True) as gate,
    ):
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        old_pid: list[int] = []

        def strike() -> None:
            try:
                pid = wait_until(
                    lambda: lock_waiters(ctl, "loader", "advisory"), "the COMMIT to wait"
                )[0]
                old_pid.append(pid)
                proxy.cut_all()  # the client loses the connection; the server keeps going
                # Let the old COMMIT finish once a retry waits on its rows, or after 1.5 s
                # (time enough for bulkops to see "in progress" and decide).
                with contextlib.suppress(AssertionError):
                    wait_until(
                        lambda: [p for p in lock_waiters(ctl, "loader") if p != pid],
                        "a retry to wait",
                        timeout=1.5,
                    )
            finally:
                gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))

        watcher = Background(strike, name="strike")
        try:
            with bulkops.connect(proxy.url(pg_url, "loader")) as db:
                report = db.insert("t", load_rows(n), chunk_size=chunk)
        finally:
            watcher.join()
            # The old backend exits once its COMMIT is done and it reads EOF.
            gone = set(old_pid)
            wait_until(lambda: not gone & set(backends_of(ctl, "loader")), "the old backend")

    assert_accounted(report, n)
    assert report.inserted == n
    assert ids_in(pg_url) == (n, n, 1, n)


# --------------------------------------------------- 4. a loader process killed mid-chunk


def test_sigkilled_loader_leaves_only_whole_committed_chunks(pg_url: str) -> None:
    n, chunk, before_kill = 20_000, 1000, 3
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    # Chunk 4 stops half-way through its INSERT (before row 3500, at the gate lock).
    gate_id = before_kill * chunk + chunk // 2
    add_gate(pg_url, f"NEW.id = {gate_id}", deferred=False)
    url = f"{pg_url}?application_name=killed_loader"
    committed: list[str] = []
    with (
        psycopg.connect(pg_url, autocommit=True) as ctl,
        psycopg.connect(pg_url, autocommit=True) as gate,
    ):
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        with subprocess.Popen(
            [sys.executable, str(LOADER), url, str(n), str(chunk)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None
                while len(committed) < before_kill:
                    line = proc.stdout.readline()
                    assert line.startswith("committed"), (line, proc.poll())
                    committed.append(line)
                pid = wait_until(
                    lambda: lock_waiters(ctl, "killed_loader", "advisory"),
                    "chunk 4 to be in flight",
                )[0]
                proc.kill()  # SIGKILL
                proc.wait(10)
                assert proc.returncode == -9
                rest = proc.stdout.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))
        # The orphaned backend finishes its statement, reads EOF and rolls back.
        wait_until(lambda: pid not in backends_of(ctl, "killed_loader"), "the backend to exit")

    committed += [line for line in rest.splitlines() if line.startswith("committed")]
    count, distinct, low, high = ids_in(pg_url)
    assert count % chunk == 0
    assert (count, distinct, low, high) == (count, count, 1 if count else 0, count)
    assert count >= len(committed) * chunk
    assert len(committed) == before_kill and count == before_kill * chunk


# ------------------------------------------------------------ 5. 1% bad rows in 100,000


def test_one_percent_bad_rows_are_isolated_with_codes_and_values(pg_url: str) -> None:
    n, pre = 100_000, 100
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL, email text NOT NULL UNIQUE)",
        f"INSERT INTO t SELECT 1000000 + g, g, 'pre' || g || '@example.com' "
        f"FROM generate_series(1, {pre}) g",
    )
    rng = random.Random(20240501)
    positions = rng.sample(range(n), 1000)  # 1% of the rows, 0-based positions
    # Most bad rows fail their conversion (cheap); 200 fail in the database.
    kinds = dict.fromkeys(positions[:400], "not a number")
    kinds.update(dict.fromkeys(positions[400:800], "int4 overflow"))
    kinds.update(dict.fromkeys(positions[800:900], "email taken"))
    kinds.update(dict.fromkeys(positions[900:], "id taken"))
    rows: list[dict[str, Any]] = []
    taken_emails, taken_ids = iter(range(1, pre + 1)), iter(range(1, pre + 1))
    for p in range(n):
        row: dict[str, Any] = {"id": p + 1, "n": p, "email": f"user{p}@example.com"}
        kind = kinds.get(p)
        if kind == "not a number":
            row["n"] = f"n{p}"
        elif kind == "int4 overflow":
            row["n"] = 2**31 + p
        elif kind == "email taken":
            row["email"] = f"pre{next(taken_emails)}@example.com"
        elif kind == "id taken":
            row["id"] = 1_000_000 + next(taken_ids)
        rows.append(row)
    given = [dict(r) for r in rows]  # untouched copies, to compare with

    rejects: list[bulkops.Rejection] = []
    with bulkops.connect(pg_url) as db:
        report = db.insert("t", rows, on_error="isolate", rejects=rejects)

    assert_accounted(report, n)
    assert report.inserted + report.rejected == n
    assert report.rejected == len(kinds) == 1000
    assert rejects == report.rejections
    assert {r.row - 1 for r in rejects} == set(kinds)
    for r in rejects:
        kind = kinds[r.row - 1]
        assert r.values == given[r.row - 1], r
        assert r.key == given[r.row - 1]["id"], r
        assert r.reason, r
        if kind in ("not a number", "int4 overflow"):
            # Caught by bulkops' own coercion, before the database: no SQLSTATE needed,
            # but the column and the reason must be there.
            assert r.column == "n", r
            assert r.code is None or r.code.startswith("22"), r
        else:
            assert r.code == "23505", r
            assert r.column == ("email" if kind == "email taken" else "id"), r
            assert "duplicate key" in r.reason, r

    loaded = {row[0]: row[1:] for row in execute(pg_url, "SELECT id, n, email FROM t")}
    expected = {r["id"]: (r["n"], r["email"]) for p, r in enumerate(given) if p not in kinds}
    expected.update({1_000_000 + g: (g, f"pre{g}@example.com") for g in range(1, pre + 1)})
    assert loaded == expected


# -------------------------------------------------------- 6. lock and statement timeouts


def ended_while_held(job: Background, watch: psycopg.Connection[Any], app: str) -> list[int]:
    """Wait for ``job`` to end while the caller still holds its lock; return the pids
    of ``app`` seen waiting on a heavyweight lock meanwhile. The job ending while the
    lock is held shows that the timeout (not a release) ended the wait, without
    measuring time."""
    seen: list[int] = []

    def over() -> bool:
        seen.extend(lock_waiters(watch, app))
        return not job.thread.is_alive()

    wait_until(over, f"{app} to give up while the lock is still held", timeout=20)
    return seen


def test_lock_timeout_is_retried_then_raised(pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old')",
    )
    with (
        connect(pg_url, "locktimed") as db,
        psycopg.connect(pg_url) as holder,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        holder.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        job = Background(
            lambda: db.upsert(
                "t",
                [{"id": 1, "v": "new"}],
                lock_timeout=0.2,
                retry=RetryPolicy(attempts=2, sleep=lambda s: None),
            )
        )
        seen = ended_while_held(job, watch, "locktimed")
        holder.rollback()
    assert seen, "the loader was never seen waiting for the row lock"
    error = job.error
    assert isinstance(error, LockTimeoutError), repr(error)
    assert isinstance(error, bulkops.errors.TransientError)
    assert error.code == "55P03"
    assert error.attempts == 2
    assert error.report is not None and error.report.retries == 1
    assert execute(pg_url, "SELECT v FROM t") == [("old",)]


def test_lock_timeout_retry_succeeds_once_the_lock_is_released(pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old')",
    )
    with (
        bulkops.connect(pg_url) as db,
        psycopg.connect(pg_url) as holder,
    ):
        holder.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            holder.rollback()  # the other session finishes while we back off

        report = db.upsert(
            "t", [{"id": 1, "v": "new"}], lock_timeout=0.2, retry=RetryPolicy(sleep=sleep)
        )
    assert report.retries == 1 and len(waits) == 1
    assert report.updated == 1
    assert execute(pg_url, "SELECT v FROM t") == [("new",)]


@pytest.mark.parametrize("mode", ["SHARE", "ACCESS EXCLUSIVE"])
def test_statement_timeout_on_a_locked_table_raises_at_once(pg_url: str, mode: str) -> None:
    """A statement cancelled by statement_timeout is 57014, StatementTimeoutError, and is
    not retried. ``LOCK TABLE t`` (ACCESS EXCLUSIVE, what a migration or TRUNCATE takes)
    must be covered too, including whatever bulkops runs before its first chunk."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    with (
        connect(pg_url, "timed") as db,
        psycopg.connect(pg_url) as holder,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        holder.execute(f"LOCK TABLE t IN {mode} MODE")
        job = Background(lambda: db.insert("t", load_rows(10), statement_timeout=0.2))
        seen = ended_while_held(job, watch, "timed")
        holder.rollback()
    assert seen, "bulkops was never seen waiting for the table lock"
    error = job.error
    assert isinstance(error, StatementTimeoutError), repr(error)
    assert not isinstance(error, bulkops.errors.TransientError)
    assert error.code == "57014"
    assert error.report is not None and error.report.retries == 0
    assert ids_in(pg_url)[0] == 0


def test_lock_timeout_covers_an_exclusively_locked_table(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    with (
        connect(pg_url, "timed") as db,
        psycopg.connect(pg_url) as holder,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        holder.execute("LOCK TABLE t")
        job = Background(
            lambda: db.insert(
                "t",
                load_rows(10),
                lock_timeout=0.2,
                retry=RetryPolicy(attempts=2, sleep=lambda s: None),
            )
        )
        seen = ended_while_held(job, watch, "timed")
        holder.rollback()
    assert seen, "bulkops was never seen waiting for the table lock"
    assert isinstance(job.error, LockTimeoutError), repr(job.error)
    assert job.error.attempts == 2
    assert job.error.code == "55P03"


# ------------------------------------------------------------------ 7. parallel workers


def test_two_workers_give_the_same_table_and_report_as_one(pg_url: str) -> None:
    n, chunk, existing = 20_000, 1000, 10_000
    for name in ("one", "two"):
        execute(
            pg_url,
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, v int NOT NULL, note text)",
            f"INSERT INTO {name} SELECT g, g, 'old' FROM generate_series(1, {existing}) g",
        )
    rows: list[dict[str, Any]] = []
    i = 5_000
    while len(rows) < n:
        i += 1
        changed = i > existing or i % 2 == 0  # odd existing ids are given as they are
        if i % 97 == 0 and len(rows) % chunk < chunk - 1 and len(rows) < n - 1:
            # An earlier version of the row in the same chunk: collapsed, last one wins.
            rows.append({"id": i, "v": -1, "note": "superseded"})
        rows.append(
            {"id": i, "v": i + 1 if changed else i, "note": f"new {i}" if changed else "old"}
        )

    reports: dict[str, bulkops.Report] = {}
    seen_backends = 0
    with psycopg.connect(pg_url, autocommit=True) as ctl:

        def count_backends(report: bulkops.Report) -> None:
            nonlocal seen_backends
            seen_backends = max(seen_backends, len(backends_of(ctl, "workers_two")))

        for name, workers in (("one", 1), ("two", 2)):
            with connect(pg_url, f"workers_{name}") as db:
                reports[name] = db.upsert(
                    name,
                    rows,
                    chunk_size=chunk,
                    workers=workers,
                    progress=count_backends if workers == 2 else None,
                )
    one, two = reports["one"], reports["two"]
    for report in (one, two):
        assert_accounted(report, n)
        assert report.chunks == n // chunk
    assert seen_backends == 2
    for field in ("inserted", "updated", "unchanged", "duplicates", "rejected", "chunks"):
        assert getattr(two, field) == getattr(one, field), field
    assert one.duplicates > 0 and one.updated > 0 and one.unchanged > 0 and one.inserted > 0
    table_one = execute(pg_url, "SELECT id, v, note FROM one ORDER BY id")
    table_two = execute(pg_url, "SELECT id, v, note FROM two ORDER BY id")
    assert table_two == table_one
    expected = {r["id"]: (r["v"], r["note"]) for r in rows}  # the last row of a key wins
    assert len(table_one) == len(set(expected) | set(range(1, existing + 1)))
    assert all(expected.get(i, (v, note)) == (v, note) for i, v, note in table_one)
