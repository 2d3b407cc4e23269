"""SQL shared by the SQLite and PostgreSQL backends (SQLAlchemy Core, compiled by each
backend's own dialect): sync's set-based diff, its state table, and the run log's
tables. Nothing above ``backends/`` sees any of it: they get the protocols of
``base.py`` (``StagedDiff``, ``SyncState``, ``RunLogStore``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from ..errors import BulkError, ConstraintError, SchemaError
from ..retry import RetryPolicy
from ..schema import ColumnSpec, TableSpec
from .base import (
    CHECKPOINTS_TABLE,
    RUNS_TABLE,
    SYNC_PART_BYTES,
    SYNC_ROWS_TABLE,
    SYNC_STATE_TABLE,
    Backend,
    DiffOp,
    RunLogStore,
    StagedDiff,
    SyncMark,
    SyncState,
    run_transaction,
)

__all__ = [
    "ALREADY_EXISTS",
    "STAGE_TYPES",
    "CoreBackend",
    "SQLRunLogStore",
    "SQLStagedDiff",
    "SQLSyncState",
    "SharedSQL",
    "count_rows",
    "count_staged",
    "create_load_stage",
    "drop_table",
    "select_where_statement",
    "staged_rows_statement",
    "within_bounds",
]

T = TypeVar("T")

# Error codes of creating a table that another session was creating at the same time:
# PostgreSQL trips on its catalog (a unique index of pg_class or pg_type: 23505,
# "relation already exists" 42P07, "type already exists" 42710).
ALREADY_EXISTS = ("23505", "42P07", "42710")

# The columns a diff's stage (and delta) has besides the compared ones: the source
# position of the row and the mark of what it is (HELD, or a DiffOp once classified).
_POSITION = "_n"
_MARK = "_op"
# Their types, for the backend that needs them to load the stage (e.g. binary COPY).
STAGE_TYPES = {_POSITION: "bigint", _MARK: "text"}
_STAGE_DDL = {_POSITION: "BIGINT NOT NULL", _MARK: "TEXT"}


def stage_type(table: TableSpec, column: str) -> str:
    """The type a staging table gives ``column``: as the table declares it, or what
    the backend stages it as instead (its ``stage_types``: PostgreSQL's domains)."""
    staged: Mapping[str, str] = table.extra.get("stage_types", {})
    return staged.get(column) or table.column(column).declared or ""


class CoreBackend(Backend, Protocol):
    """What a SQL backend gives the shared SQL here."""

    dialect: sa.engine.Dialect

    def execute_core(
        self,
        statement: sa.ClauseElement,
        values: Mapping[str, Any] | None = None,
        *,
        counted: bool = False,
        binary: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run a Core statement or DDL in whatever transaction is open; its rows.
        Counted in ``statements`` only if ``counted`` (bookkeeping is not work).
        ``binary``: results in the driver's binary format where it has one (large
        blobs come back without being spelled out in hex)."""
        ...

    def plain_blobs(self, table: str, column: str) -> None:
        """Store ``column`` of ``table`` uncompressed where the database would try to
        compress large values (PostgreSQL's TOAST: digests do not compress, and trying
        costs several times the write); in the open transaction."""
        ...

    def core_table(self, table: TableSpec) -> sa.TableClause: ...

    def distinct(self, column: ColumnSpec, a: Any, b: Any) -> Any:
        """SQL that is true where two values of ``column`` differ as data."""
        ...

    def load_stage(
        self,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        types: Mapping[str, str],
    ) -> None:
        """Load driver-ready ``rows`` into the temporary table ``stage``, typed as
        ``table``'s columns, or as ``types`` says for the stage's own columns."""
        ...

    def finish_stage(self, stage: str) -> None: ...


def create_tables(backend: CoreBackend, tables: Sequence[sa.Table], retry: RetryPolicy) -> None:
    """CREATE TABLE IF NOT EXISTS, in a transaction of its own; another session that
    made them at the same moment is fine."""

    def create() -> None:
        for table in tables:
            backend.execute_core(sa.schema.CreateTable(table, if_not_exists=True))

    try:
        run_transaction(backend, create, retry, what=f"creating {tables[0].name}")
    except BulkError as error:
        if error.code not in ALREADY_EXISTS:
            raise


def _equal(t: Any, where: Mapping[str, Any]) -> list[Any]:
    return [t.c[c].is_(None) if v is None else t.c[c] == sa.literal(v) for c, v in where.items()]


def count_rows(backend: CoreBackend, table: TableSpec, where: Mapping[str, Any]) -> int:
    """Rows of ``table`` equal to ``where`` (driver values), counted as work."""
    t = backend.core_table(table)
    statement = sa.select(sa.func.count()).select_from(t).where(*_equal(t, where))
    return int(backend.execute_core(statement, counted=True)[0][0])


def select_where_statement(
    t: sa.TableClause,
    columns: Sequence[str],
    where: Mapping[str, Any],
    order_by: Sequence[str] = (),
    limit: int | None = None,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """SELECT ``columns`` of rows whose columns equal ``where`` (None matches NULL),
    and the values for its binds."""
    stmt = sa.select(*(t.c[c] for c in columns)).where(
        *(
            t.c[c].is_(None) if v is None else t.c[c] == sa.bindparam(f"w{i}")
            for i, (c, v) in enumerate(where.items())
        )
    )
    if order_by:
        stmt = stmt.order_by(*(t.c[c] for c in order_by))
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt, {f"w{i}": v for i, v in enumerate(where.values())}


def within_bounds(result: Any, min_value: Any, max_value: Any) -> list[Any]:
    """Conditions keeping ``result`` inside ``[min_value, max_value]`` (None: no bound),
    with the bounds as bound parameters."""
    guards = []
    if min_value is not None:
        guards.append(result >= sa.bindparam("low", min_value))
    if max_value is not None:
        guards.append(result <= sa.bindparam("high", max_value))
    return guards


# ------------------------------------------------------------------ sync state

_metadata = sa.MetaData()
# The row of the state table that holds a table's generation (not a scope's digest).
_GENERATION_ROW = "*"

state_table = sa.Table(
    SYNC_STATE_TABLE,
    _metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.Text),
    sa.Column("target_rows", sa.BigInteger),
    sa.Column("synced_at", sa.DateTime(timezone=True)),
)

# Each synced scope's per-row digests (sync/digests.py: opaque bytes here), split into
# parts of at most SYNC_PART_BYTES, each marked with the generation it was recorded at: a
# write to the table bumps the generation, which leaves them standing for nothing.
rows_table = sa.Table(
    SYNC_ROWS_TABLE,
    _metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
# Digests this large are worth a look at how the database stores them (plain_blobs).
_PLAIN = 1024 * 1024


class SQLSyncState:
    """The sync state table of a SQL database (the same on SQLite and PostgreSQL).
    Each table has a generation row (scope ``*``) and a row per synced scope;
    ``invalidate`` bumps the generation and forgets every digest."""

    def __init__(self, backend: CoreBackend, retry: RetryPolicy) -> None:
        self.backend = backend
        self.retry = retry

    def _execute(self, statement: sa.ClauseElement) -> list[tuple[Any, ...]]:
        return self.backend.execute_core(statement)

    def _transaction(self, work: Callable[[], T]) -> T:
        return run_transaction(self.backend, work, self.retry, what="a sync state write")

    def kept(self, spec: TableSpec) -> bool:
        """Whether the database keeps sync state (reflection says so, for free)."""
        return bool(spec.extra.get("sync_state"))

    def begin(self, table: str, scope: str) -> SyncMark:
        create_tables(self.backend, [state_table], self.retry)
        t = state_table.c

        def read() -> SyncMark:
            rows = self._execute(
                sa.select(t.scope, t.generation, t.digest, t.target_rows).where(
                    t.table_name == table, sa.or_(t.scope == _GENERATION_ROW, t.scope == scope)
                )
            )
            found = {r[0]: r for r in rows}
            if _GENERATION_ROW not in found:
                self._execute(
                    sa.insert(state_table).values(
                        table_name=table, scope=_GENERATION_ROW, generation=0
                    )
                )
                return SyncMark(0, None, None)
            generation = found[_GENERATION_ROW][1]
            mine = found.get(scope)
            if mine is None or mine[1] != generation:
                return SyncMark(generation, None, None, recorded=mine is not None)
            return SyncMark(generation, mine[2], mine[3], recorded=True)

        try:
            return self._transaction(read)
        except ConstraintError:
            # Another sync of this table made its generation row first: read that one.
            return self._transaction(read)

    def invalidate(self, table: str, in_transaction: bool = False) -> None:
        t = state_table.c
        statement = (
            sa.update(state_table)
            .where(t.table_name == table)
            .values(generation=t.generation + 1, digest=None)
        )
        if in_transaction:
            self._execute(statement)
        else:
            self._transaction(lambda: self._execute(statement))

    def read_rows(self, table: str, scope: str, mark: SyncMark) -> list[bytes] | None:
        # The parts stand while the scope's digest does: they are written with it, in
        # one transaction, and a write to the table forgets the digest.
        if mark.digest is None:
            return None
        r = rows_table.c
        statement = (
            sa.select(r.data).where(r.table_name == table, r.scope == scope).order_by(r.part)
        )
        try:
            parts = self._transaction(lambda: self.backend.execute_core(statement, binary=True))
        except SchemaError:
            return None  # no per-row digests were ever kept here
        if not parts or not all(isinstance(p[0], bytes | memoryview) for p in parts):
            return None  # none, or not what record() wrote (then they are made again)
        return [bytes(p[0]) for p in parts]

    def record(
        self,
        table: str,
        scope: str,
        mark: SyncMark,
        digest: str,
        target_rows: int | None,
        rows: Sequence[bytes] | None = None,
        append_to: int | None = None,
    ) -> bool:
        """Keep ``digest`` (and the per-row digests) for the scope unless the table was
        written by someone else since the sync started (then the next sync compares
        in full). Appended parts cost what they hold: a sync that changed 1% of a
        table's rows writes 1% of its digests."""
        t = state_table.c
        r = rows_table.c
        parts = list(rows or [])
        for part in parts:
            if len(part) > SYNC_PART_BYTES:
                raise ValueError(
                    f"a part of the per-row digests is larger than {SYNC_PART_BYTES:,} bytes"
                )

        def write() -> bool:
            found = self._execute(
                sa.select(t.generation).where(t.table_name == table, t.scope == _GENERATION_ROW)
            )
            if not found or found[0][0] != mark.generation:
                return False
            first = 0
            if append_to is not None:
                kept = self._execute(
                    sa.select(sa.func.count(), sa.func.max(r.part)).where(
                        r.table_name == table, r.scope == scope
                    )
                )
                if kept[0][0] != append_to:
                    return False  # another sync of the scope kept other parts meanwhile
                first = 0 if kept[0][1] is None else kept[0][1] + 1
            self._execute(sa.delete(state_table).where(t.table_name == table, t.scope == scope))
            if parts or mark.recorded:  # in this transaction: no statement of its own
                self._execute(sa.schema.CreateTable(rows_table, if_not_exists=True))
            if sum(map(len, parts)) >= _PLAIN:  # (small ones cost little to compress)
                self.backend.plain_blobs(SYNC_ROWS_TABLE, "data")
            if mark.recorded and append_to is None:  # (digests are written with their scope)
                self._execute(sa.delete(rows_table).where(r.table_name == table, r.scope == scope))
            for number, part in enumerate(parts, first):
                self._execute(
                    sa.insert(rows_table).values(
                        table_name=table, scope=scope, part=number,
                        generation=mark.generation, data=part,
                    )
                )  # fmt: skip
            self._execute(
                sa.insert(state_table).values(
                    table_name=table, scope=scope, generation=mark.generation,
                    digest=digest, target_rows=target_rows,
                    synced_at=dt.datetime.now(dt.UTC),
                )
            )  # fmt: skip
            return True

        try:
            return self._transaction(write)
        except BulkError as error:
            if error.code not in ALREADY_EXISTS:
                raise
            # Another session made the digests' table at the same moment: it is there.
            return self._transaction(write)


# ------------------------------------------------------------ set-based diff

# A DiffOp as the delta table marks it.
_OPS: dict[DiffOp, str] = {"add": "a", "change": "c", "outside": "x", "delete": "d"}
_OP_OF: dict[str, DiffOp] = {v: k for k, v in _OPS.items()}


class SQLStagedDiff:
    """The difference computed by a SQL database: the source is staged in a temporary
    table (the compared columns typed as the target declares them, so values compare
    as the target's do, plus the source position and a mark); one pass over the stage
    joined to the target fills a small delta table with the added, changed and
    out-of-scope rows, one anti-join adds the target's keys the source lacks."""

    def __init__(
        self,
        backend: CoreBackend,
        table: TableSpec,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        where: Mapping[str, Any],
        retry: RetryPolicy,
        what: str,
    ) -> None:
        self.backend = backend
        self.spec = table
        self.cols = columns
        self.key = key
        self.compared = tuple(c for c in columns if c not in key)
        self.where = dict(where)
        self.retry = retry
        self.what = what
        self.name = f"bulkops_sync_{uuid.uuid4().hex[:12]}"
        self.delta = f"{self.name}_delta"
        self._names = (*columns, _POSITION, _MARK)
        self._create_temporary(self.name)

    def _q(self, name: str) -> str:
        return str(self.backend.dialect.identifier_preparer.quote(name))

    def _exec(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        if isinstance(statement, str):
            statement = sa.text(statement)
        return self.backend.execute_core(statement, values, counted=True)

    def _in_transaction(self, work: Callable[[], T]) -> T:
        return run_transaction(self.backend, work, self.retry, what=self.what)

    def _create_temporary(self, name: str) -> None:
        spec = self.spec
        columns = ", ".join(f"{self._q(c)} {stage_type(spec, c)}" for c in self.cols)
        extra = ", ".join(f"{self._q(c)} {kind}" for c, kind in _STAGE_DDL.items())
        self._exec(f"CREATE TEMPORARY TABLE {self._q(name)} ({columns}, {extra})")

    def close(self) -> None:
        for table in (self.delta, self.name):
            with contextlib.suppress(BulkError):
                self._exec(f"DROP TABLE IF EXISTS {self._q(table)}")

    # ------------------------------------------------------------------ stage

    def stage(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.backend.load_stage(self.name, self.spec, self._names, rows, STAGE_TYPES)

    def staged(self) -> None:
        self.backend.finish_stage(self.name)

    def _stage_table(self, alias: str | None = None) -> Any:
        t = sa.table(self.name, *(sa.column(c) for c in self._names))
        return t.alias(alias) if alias else t

    def unique_keys(self) -> int:
        keys = ", ".join(self._q(k) for k in self.key)
        index = self._q(f"{self.name}_key")
        create = f"CREATE UNIQUE INDEX {index} ON {self._q(self.name)} ({keys})"
        try:
            self._exec(create)
            return 0
        except ConstraintError:
            pass
        s, later = self._stage_table(), self._stage_table("later")
        overtaken = sa.exists().where(
            *(later.c[k] == s.c[k] for k in self.key), later.c[_POSITION] > s.c[_POSITION]
        )
        # Held rows stand in the stage only to keep their keys from being deleted:
        # they are counted as rejected already, not again as duplicates.
        counted = sa.select(sa.func.count()).select_from(s).where(overtaken, s.c[_MARK].is_(None))

        def collapse() -> int:
            duplicates = int(self._exec(counted)[0][0])
            self._exec(sa.delete(s).where(overtaken))
            return duplicates

        removed = self._in_transaction(collapse)
        self._exec(create)
        return removed

    # --------------------------------------------------------------- classify

    def _delta_table(self) -> Any:
        return sa.table(self.delta, *(sa.column(c) for c in (_POSITION, _MARK, *self.cols)))

    def classify(self, delete_missing: bool, after: int) -> None:
        s, t, d = self._stage_table(), self.backend.core_table(self.spec), self._delta_table()
        cols, key = self.cols, self.key
        self._create_temporary(self.delta)
        match = sa.and_(*(t.c[k] == s.c[k] for k in key))
        # In a left join a matched row's key is not NULL (it equalled the source's).
        missing = t.c[key[0]].is_(None)
        if self.where:
            in_scope = sa.and_(
                *(t.c[c].is_not_distinct_from(sa.literal(v)) for c, v in self.where.items())
            )
        else:
            in_scope = sa.true()
        differs = sa.or_(
            *(self.backend.distinct(self.spec.column(c), t.c[c], s.c[c]) for c in self.compared)
        ) if self.compared else sa.false()  # fmt: skip
        op = sa.case((missing, _OPS["add"]), (~in_scope, _OPS["outside"]), else_=_OPS["change"])
        joined = s.outerjoin(t, match)
        statements: list[Any] = [
            sa.insert(d).from_select(
                [_POSITION, _MARK, *cols],
                sa.select(s.c[_POSITION], op, *(s.c[c] for c in cols))
                .select_from(joined)
                .where(s.c[_MARK].is_(None), sa.or_(missing, ~in_scope, differs)),
            )
        ]
        if delete_missing:
            # The target's column first, as in match: on SQLite the left operand's
            # collation decides, so a NOCASE key is found whatever its case.
            present = sa.exists().where(match)
            statements.append(
                sa.insert(d).from_select(
                    [_POSITION, _MARK, *key],
                    sa.select(
                        # row numbers for the deletions follow the source's
                        sa.literal(after) + sa.func.row_number().over(),
                        sa.literal(_OPS["delete"]),
                        *(t.c[k] for k in key),
                    ).where(in_scope, ~present),
                )
            )

        def classify() -> None:
            for statement in statements:
                self._exec(statement)

        self._in_transaction(classify)
        self._exec(
            f"CREATE INDEX {self._q(self.delta + _MARK)} ON {self._q(self.delta)} "
            f"({self._q(_MARK)}, {self._q(_POSITION)})"
        )

    # ------------------------------------------------------------------ read

    def counts(self) -> dict[DiffOp, int]:
        d = self._delta_table()
        rows = self._exec(sa.select(d.c[_MARK], sa.func.count()).group_by(d.c[_MARK]))
        return {_OP_OF[mark]: int(n) for mark, n in rows}

    def pages(
        self, ops: Sequence[DiffOp], columns: Sequence[str], size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        d = self._delta_table()
        # Read as the backend reads the table (money as numeric, ...), for its decoders.
        reads = self.spec.extra.get("reads", {})
        after = -1
        query = (
            sa.select(
                d.c[_POSITION],
                sa.case(*((d.c[_MARK] == _OPS[op], op) for op in ops)),
                *(
                    sa.literal_column(f"{self._q(c)}::{reads[c]}") if c in reads else d.c[c]
                    for c in columns
                ),
            )
            .where(
                sa.or_(*(d.c[_MARK] == _OPS[op] for op in ops)),
                d.c[_POSITION] > sa.bindparam("after"),
            )
            .order_by(d.c[_POSITION])
            .limit(size)
        )
        while True:
            page = self._exec(query, {"after": after})
            if not page:
                return
            after = page[-1][0]
            yield page


# -------------------------------------------------------------------- run log

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself

runs_table = sa.Table(
    RUNS_TABLE,
    _metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("verb", sa.Text, nullable=False),
    # "table" is a reserved word in SQL: every query would have to quote it.
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("counts", sa.Text),  # JSON: rows_in, the outcome counts, chunks
    sa.Column("statements", sa.BigInteger),
    sa.Column("retries", sa.BigInteger),
    sa.Column("rejects", sa.BigInteger),
    sa.Column("elapsed", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("label", sa.Text),
    # Resumable loads: what was read ("sha256:…"), the options that decide the chunks
    # (JSON), and the first run of the load, under which its checkpoints are kept.
    sa.Column("source", sa.Text),
    sa.Column("options", sa.Text),
    sa.Column("load_id", sa.BigInteger),
)

checkpoints_table = sa.Table(
    CHECKPOINTS_TABLE,
    _metadata,
    sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("first_row", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.BigInteger, nullable=False),
)

_RUN_COLUMNS = [c.name for c in runs_table.columns]


class SQLRunLogStore:
    """The run log's tables in a SQL database (the same on SQLite and PostgreSQL)."""

    def __init__(self, backend: CoreBackend) -> None:
        self.backend = backend

    def _execute(
        self, statement: sa.ClauseElement, values: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.backend.execute_core(statement, values)

    def create(self, retry: RetryPolicy) -> None:
        create_tables(self.backend, [runs_table, checkpoints_table], retry)

    def insert_run(self, values: Mapping[str, Any], first_of_load: bool) -> int:
        t = runs_table
        rows = self._execute(sa.insert(t).values(dict(values)).returning(t.c.id))
        run_id = int(rows[0][0])
        if first_of_load:
            self._execute(sa.update(t).where(t.c.id == run_id).values(load_id=run_id))
        return run_id

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None:
        t = runs_table
        self._execute(sa.update(t).where(t.c.id == run_id).values(dict(values)))

    def _rows(
        self, statement: sa.Select[Any], values: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return [
            dict(zip(_RUN_COLUMNS, row, strict=True)) for row in self._execute(statement, values)
        ]

    def runs(self, last: int | None = None) -> list[dict[str, Any]]:
        t = runs_table
        stmt = sa.select(*t.columns).order_by(t.c.id.desc())
        if last is not None:
            stmt = stmt.limit(last)
        return self._rows(stmt)

    def previous_load(self, table: str) -> dict[str, Any] | None:
        t = runs_table
        stmt = (
            sa.select(*t.columns)
            .where(t.c.table_name == sa.bindparam("table"), t.c.source.is_not(None))
            .order_by(t.c.id.desc())
            .limit(1)
        )
        rows = self._rows(stmt, {"table": table})
        return rows[0] if rows else None

    def checkpoints(self, load_id: int) -> list[tuple[int, int]]:
        t = checkpoints_table
        stmt = sa.select(t.c.first_row, t.c.rows).where(t.c.load_id == sa.bindparam("load"))
        return [(int(f), int(n)) for f, n in self._execute(stmt, {"load": load_id})]

    def add_checkpoint(self, load_id: int, run_id: int, first_row: int, rows: int) -> None:
        self._execute(
            sa.insert(checkpoints_table).values(
                load_id=load_id, first_row=first_row, rows=rows, run_id=run_id
            )
        )


# ------------------------------------------------------- partitioned loads (dask)


def create_load_stage(
    backend: CoreBackend,
    stage: str,
    table: TableSpec,
    columns: Sequence[str],
    order: Sequence[str],
    retry: RetryPolicy,
    layout: Callable[[Callable[[str], str]], tuple[str, Sequence[str]]] | None = None,
) -> bool:
    """The real table an atomic load stages its partitions in: ``columns`` typed (and
    NOT NULL) as ``table`` declares them, so bad rows are rejected while staging, not
    when the load is published; plus the bigint ``order`` columns. No key: a key may
    come in several partitions. ``layout`` (given the quoting function): a clause for
    the end of CREATE TABLE and the statements that follow it in the same transaction
    (PostgreSQL's partitions of the stage). Whether this call created the stage with
    ``layout`` (False: without one, or it was there already, from an earlier run of
    the load or another client's, and is used as it is)."""
    quote = backend.dialect.identifier_preparer.quote

    def ddl(column: ColumnSpec) -> str:
        required = " NOT NULL" if not column.nullable and not column.has_default else ""
        return f"{quote(column.name)} {stage_type(table, column.name)}{required}"

    parts = [ddl(table.column(c)) for c in columns]
    parts += [f"{quote(c)} BIGINT NOT NULL" for c in order]
    clause, after = layout(quote) if layout is not None else ("", ())
    # With a layout, a stage that exists fails the transaction: it is used as it is.
    exists = "IF NOT EXISTS " if layout is None else ""
    statement = sa.text(f"CREATE TABLE {exists}{quote(stage)} ({', '.join(parts)}){clause}")

    def create() -> None:
        backend.execute_core(statement)
        for ddl_after in after:
            backend.execute_core(sa.text(ddl_after))

    try:
        run_transaction(backend, create, retry, what=f"creating {stage}")
    except BulkError as error:
        if error.code not in ALREADY_EXISTS:
            raise
        return False
    return layout is not None


def drop_table(backend: CoreBackend, table: str) -> None:
    """DROP TABLE IF EXISTS ``table`` in whatever transaction is open."""
    quote = backend.dialect.identifier_preparer.quote
    backend.execute_core(sa.text(f"DROP TABLE IF EXISTS {quote(table)}"))


def staged_rows_statement(
    stage: str, columns: Sequence[str], key: Sequence[str], order: Sequence[str]
) -> sa.Select[Any]:
    """The rows of a load's stage in ``order``; with a ``key``, only the last row (by
    ``order``) of each key, in key order (a window function: SQLite and PostgreSQL)."""
    s = sa.table(stage, *(sa.column(c) for c in (*columns, *order)))
    if not key:
        return sa.select(*(s.c[c] for c in columns)).order_by(*(s.c[c] for c in order))
    rank = (
        sa.func.row_number()
        .over(partition_by=[s.c[k] for k in key], order_by=[s.c[c].desc() for c in order])
        .label("bulkops_rank")
    )
    ranked = sa.select(*(s.c[c] for c in columns), rank).subquery("ranked")
    return (
        sa.select(*(ranked.c[c] for c in columns))
        .where(ranked.c.bulkops_rank == 1)
        .order_by(*(ranked.c[k] for k in key))
    )


def count_staged(backend: CoreBackend, stage: str) -> int:
    s = sa.table(stage)
    return int(backend.execute_core(sa.select(sa.func.count()).select_from(s))[0][0])


class SharedSQL:
    """The ``SQLBackend`` methods whose SQL is this module's, shared by SQLite and
    PostgreSQL (a base class of both backends, so the delegation is written once)."""

    retry: RetryPolicy

    def sync_state(self: CoreBackend) -> SyncState:
        """Where sync keeps its digests: the sync state table, in this database."""
        return SQLSyncState(self, self.retry)

    def staged_diff(
        self: CoreBackend,
        table: TableSpec,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        where: Mapping[str, Any],
        retry: RetryPolicy,
        what: str,
    ) -> StagedDiff:
        return SQLStagedDiff(self, table, columns, key, where, retry, what)

    def count_rows(self: CoreBackend, table: TableSpec, where: Mapping[str, Any]) -> int:
        return count_rows(self, table, where)

    def run_log_store(self: CoreBackend) -> RunLogStore:
        return SQLRunLogStore(self)

    def create_load_stage(
        self: CoreBackend,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        order: Sequence[str],
        retry: RetryPolicy,
        partitions: int,
    ) -> Sequence[tuple[range, str]]:
        create_load_stage(self, stage, table, columns, order, retry)
        return ()

    def drop_table(self: CoreBackend, table: str) -> None:
        drop_table(self, table)
