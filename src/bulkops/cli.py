"""The ``bulkops`` command: a thin layer over the library (parse -> call -> print)."""

from __future__ import annotations

import atexit
import datetime as dt
import importlib.abc
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, nullcontext, suppress
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import BulkError, DataError, RerunError, SchemaError, TooManyRejectsError
from .report import Report, SyncReport, jsonable
from .runlog import Run
from .schema import COERCERS, TYPES
from .sources import (
    FORMATS,
    INFER_SAMPLE_ROWS,
    Inference,
    SourceError,
    TypeMismatch,
    file_columns,
    file_digest,
    infer_file,
    infer_types,
    open_arrow,
    open_source,
    text_encoding,
)
from .store import Store

if TYPE_CHECKING:
    from rich.table import Table

DEFAULT_DB = "sqlite:///bulkops.db"
EXIT_REJECTED = 1
EXIT_FAILED = 2

# Messages are not wrapped: a log or a pipe keeps each on one line, greppable.
err_console = Console(stderr=True, soft_wrap=True)

db_option = click.option(
    "--db",
    default=DEFAULT_DB,
    show_default=True,
    envvar="BULKOPS_DB",
    help="Database URL (also from $BULKOPS_DB).",
)


# One default for every command that reads a file: a file isolates bad rows.
def _encoding(context: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return text_encoding(value)
    except SourceError as error:
        raise click.BadParameter(str(error)) from None


encoding_option = click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    callback=_encoding,
    help="The text encoding of a CSV, TSV or JSON Lines file (for example cp1252 or latin-1 "
    "for a spreadsheet's export, utf-16 for its 'Unicode text'); a byte order mark is "
    "skipped. Files in another encoding than UTF-8 are read by the row reader.",
)


def _delimiter(context: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    separator = {"\\t": "\t", "tab": "\t"}.get(value, value)
    if len(separator) != 1 or separator in '"\r\n':
        raise click.BadParameter(
            f"{value!r}: one character other than a quote or a line break ('\\t' or 'tab' for "
            "a tab)"
        )
    return separator


delimiter_option = click.option(
    "--delimiter",
    metavar="CHAR",
    callback=_delimiter,
    help="CSV/TSV: the character between fields (default: a comma, a tab for TSV); ';' for "
    "a European spreadsheet's CSV, '\\t' or 'tab' for a tab.",
)


def _file_id(
    digest: str, encoding: str, nulls: Sequence[str] = (), delimiter: str | None = None
) -> str:
    """What identifies the input for a resume or a sync: its bytes' digest, and what
    reads them otherwise than the defaults (the same bytes read otherwise are other
    rows): the encoding where it is not UTF-8, the --null spellings and a --delimiter."""
    if encoding not in ("utf-8", "utf-8-sig"):
        digest = f"{digest};encoding={encoding}"
    if nulls:
        digest = f"{digest};null={json.dumps(sorted(set(nulls)))}"
    if delimiter is not None:
        digest = f"{digest};delimiter={json.dumps(delimiter)}"
    return digest


null_option = click.option(
    "--null",
    "nulls",
    multiple=True,
    metavar="TOKEN",
    help="CSV/TSV: an unquoted field spelled TOKEN is NULL (repeatable: --null NA --null "
    "'\\N'). An unquoted empty field is always NULL; a quoted one (\"\") is empty text.",
)

on_error_option = click.option(
    "--on-error",
    type=click.Choice(["isolate", "raise"]),
    default="isolate",
    show_default=True,
    help="isolate: set bad rows aside and go on; raise: stop at the first bad row. (A file "
    "isolates by default; the library's default is raise.)",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bulkops")
def main() -> None:
    """bulkops: fast, safe bulk work on databases.

    Load, upsert, update or delete many rows at once in short transactions, with
    retries on transient errors and bad rows set aside instead of failing the run.
    """


def run() -> NoReturn:
    """The ``bulkops`` program (its console script and ``python -m bulkops``): ``main``,
    then the process ends once its exit handlers ran and its output is flushed.

    Python's own shutdown then takes every loaded module apart one object at a time:
    0.2 s of CPU after SQLAlchemy, psycopg and pyarrow (a one-row ``load`` took 0.66 s
    of user CPU, 0.45 s without it), all after the work is done and reported. Where a
    thread that is not a daemon still runs, the process ends the usual way (it would
    wait for that thread).

    Only the program changes what the whole process sees (``_skip_unused``,
    ``_return_freed_memory``): the process ends with the command. A process that calls
    ``main([...])`` itself (a notebook, a test) keeps numpy, pandas and pyarrow as usual."""
    try:
        main(obj=_PROGRAM)
        code: Any = 0
    except SystemExit as done:
        code = done.code
    if not isinstance(code, int):  # sys.exit("message") / sys.exit(None), as Python does
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    waited = [
        t for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]  # fmt: skip
    if waited:
        sys.exit(code)
    atexit._run_exitfuncs()  # what the usual exit runs first: logging's flush and the like
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):  # a closed pipe: as the usual exit, say nothing
            stream.flush()
    os._exit(code)


@main.command()
@click.argument("file")
@click.option("--table", "-t", required=True, help="Target table.")
@db_option
@click.option(
    "--mode",
    type=click.Choice(["insert", "upsert", "update", "delete"]),
    default="insert",
    show_default=True,
    help="What to do with each row: insert it, upsert it by key, update the row with its "
    "key, or delete the row with its key.",
)
@click.option("--key", help="Key column(s), comma-separated (default: the primary key).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Input format (default: from the file extension; csv for stdin).",
)
@click.option("--chunk-size", type=click.IntRange(min=1), help="Rows per chunk (transaction).")
@click.option("--atomic", is_flag=True, help="One transaction for the whole file: all or nothing.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Write chunks in parallel over this many connections (PostgreSQL; SQLite has one "
    "writer and ignores it).",
)
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "ignore"]),
    default="error",
    show_default=True,
    help="insert mode: what a row whose key already exists is (a bad row, or ignored).",
)
@on_error_option
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, writable=True),
    help="Write rejected rows (position, key, column, reason, values) here as JSON Lines.",
)
@click.option(
    "--max-rejects",
    type=click.IntRange(min=0),
    help="Stop the run cleanly once more rows than this are rejected.",
)
@click.option(
    "--create/--no-create",
    default=True,
    show_default=True,
    help="Create the table from the data when it does not exist (types inferred, --key "
    "as primary key).",
)
@click.option(
    "--run-log/--no-run-log",
    default=True,
    show_default=True,
    help="Record the run (and a checkpoint per committed chunk) in the database's "
    "bulkops_runs table; see `bulkops runs`.",
)
@click.option("--label", help="A label for this run in the run log.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted load of the same file into the same table with the same "
    "options: the chunks it committed are skipped, so no row is written twice.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Load the file again although an earlier load of it into this table did not "
    "finish (without a key, its committed rows are then written twice).",
)
@null_option
@encoding_option
@delimiter_option
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="COLUMN=TYPE",
    help=f"Create COLUMN with TYPE instead of the inferred one (repeatable; {', '.join(TYPES)}).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the table that would be created (columns, types, key, missing-value "
    "hints) and write nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary table.")
def load(
    file: str,
    table: str,
    db: str,
    mode: str,
    key: str | None,
    fmt: str | None,
    chunk_size: int | None,
    atomic: bool,
    workers: int,
    on_conflict: Literal["error", "ignore"],
    on_error: Literal["isolate", "raise"],
    rejects: str | None,
    max_rejects: int | None,
    create: bool,
    run_log: bool,
    label: str | None,
    resume: bool,
    force: bool,
    nulls: tuple[str, ...],
    encoding: str,
    delimiter: str | None,
    types: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Load FILE (CSV, TSV, JSON Lines or Parquet; .gz or a one-file .zip is fine; -
    for stdin) into a table.

    A missing table is created from the whole file (stdin: from its first rows), so the
    same rows in any order give the same table; --type overrides a column's type and
    --dry-run shows the table without writing anything.

    Exit status: 0 when every row was written, ignored or unchanged; 1 when rows were
    rejected or the run stopped at a bad row; 2 on a usage error or a fatal error
    (database unreachable, table missing with --no-create, unreadable file).
    """
    _skip_unused(numpy=True)
    _return_freed_memory()
    key_cols = _key_option(key)
    overrides = _type_option(types)
    if resume and not run_log:
        _fail("--resume finds its checkpoints in the run log: drop --no-run-log")
    if resume and file == "-":
        _fail("--resume needs a file: standard input cannot be read again")
    if dry_run:
        _dry_run(file, fmt, table, key_cols, nulls, overrides, as_json, encoding, delimiter)
        return
    # Opened now, so an unwritable path stops the run before anything is written.
    # A resumed run adds to the rejects of the run it continues.
    rejects_file = _open_rejects(rejects, append=resume)
    # The file's digest identifies it, so a resume can tell it is the same file: read
    # by a thread of its own (hashing lets go of the GIL) while the command starts.
    digesting = _in_background(file_digest, file) if run_log and file != "-" else None
    try:
        source = _open_input(file, fmt, nulls, encoding, delimiter)
    except SourceError as error:
        _fail(str(error))
    inference: Inference | None = None
    with ExitStack() as held, _open_store(db, run_log=run_log) as store:
        source = held.enter_context(
            _rows_unless_columnar(source, store, file, fmt, nulls, encoding, delimiter)
        )
        if resume and not store.run_log:
            _fail(f"--resume needs the run log, which {store.capabilities.name} cannot keep")
        digest: str | None = None
        if store.run_log and digesting is not None:
            try:
                digest = _file_id(digesting.result(), encoding, nulls, delimiter)
            except SourceError as error:
                _fail(str(error))
        columns = source.columns
        rows = source.batches if source.batches is not None else source.rows
        try:
            if store.run_log:
                store.runs(1)  # a foreign table of the run log's name: stop before writing
            columns, rows, inference = _ensure_table(
                store, table, file, fmt, columns, rows, key_cols, create, nulls, overrides,
                encoding, delimiter,
            )  # fmt: skip
        except (BulkError, SourceError) as error:
            _fail(_cli_words(str(error)))
        progress = _progress_bar(source, quiet or as_json)
        options: dict[str, Any] = {
            "chunk_size": chunk_size,
            "atomic": atomic,
            "workers": workers,
            "on_error": on_error,
            "rejects": rejects_file,
            # All or nothing: the first rejected row rolls the whole file back (and is
            # still written to --rejects).
            "max_rejects": 0 if atomic and max_rejects is None else max_rejects,
            "progress": progress.callback if progress else None,
            "label": label,
            "source_id": digest,
            "resume": resume,
            # A load of the file again over an unfinished load of it that would write
            # its rows twice is refused (RerunError) unless --force.
            "force": force,
        }
        report: Report | None = None
        failure: BulkError | None = None
        try:
            with progress or nullcontext():
                report = _run_load(
                    store, mode, table, columns, rows, key_cols, on_conflict, options
                )
        except RerunError as error:
            _fail(_cli_words(str(error)))  # refused before anything was written
        except BulkError as error:
            failure = error
            report = error.report if isinstance(error, BulkError) else None
        finally:
            if rejects_file is not None:
                with suppress(OSError):  # a failed write was reported already
                    rejects_file.close()
                    # Opened up front to check it; left behind only if it holds rows.
                    name = rejects_file.name
                    if not resume and os.path.isfile(name) and os.path.getsize(name) == 0:
                        os.remove(name)
    if atomic and isinstance(failure, TooManyRejectsError) and report is not None:
        report.stopped = "--atomic: a row was rejected, so nothing was written"
    _finish(
        report, failure, as_json=as_json, quiet=quiet, rejects=rejects, inference=inference,
        committed=_committed_note(report, failure, resumable=digest is not None),
        reader=_reader_name(source),
    )  # fmt: skip


def _in_background(work: Callable[[str], str], argument: str) -> Future[str]:
    """``work(argument)`` run by a thread of its own; its result (or error) when asked."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(work(argument))
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name="bulkops-digest", daemon=True).start()
    return future


# The root context's ``obj`` when the ``bulkops`` program runs (``run``), rather than a
# process calling ``main`` and going on after it.
_PROGRAM = "bulkops program"


def _in_program() -> click.Context | None:
    """The command's context when it runs as the ``bulkops`` program, else None."""
    context = click.get_current_context(silent=True)
    if context is None or context.find_root().obj is not _PROGRAM:
        return None
    return context


class _NotUsed(importlib.abc.MetaPathFinder):
    """Makes ``import`` of the packages ``names`` (and their modules) fail in this
    process (see ``_skip_unused``)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{name} is not used by the bulkops command", name=name)


# Packages that libraries the command loads import if they can, for work the command
# never asks of them: pyarrow pickles with cloudpickle, tenacity imports tornado for its
# coroutines. Both: 25-30 ms of CPU before the first byte is written (pyarrow and
# tenacity imported after psycopg, median of 15 runs: 54-63 ms with them, 24-25 without).
_NEVER_USED = ("cloudpickle", "tornado")


def _skip_unused(*, numpy: bool = False) -> None:
    """The first time pyarrow turns a Python value into Arrow (a scalar in a compute
    call), it imports pandas if it can, to tell pandas objects apart: about a second,
    for a command whose rows come from files and never hold a pandas object. pyarrow
    also imports numpy when it is imported, if it can (0.1 s), which a file load never
    uses (``numpy``; sync's digests do use it); and ``_NEVER_USED``. Unless something
    loaded them already, the program runs as if they were not installed. Only the
    program (``run``): pyarrow decides once per process whether numpy is there, so a
    process that calls ``main([...])`` and goes on (a notebook, a test) must keep them."""
    context = _in_program()
    if context is None or any(isinstance(f, _NotUsed) for f in sys.meta_path):
        return
    names = (
        frozenset(("pandas", "numpy", *_NEVER_USED) if numpy else ("pandas", *_NEVER_USED))
        - sys.modules.keys()
    )
    if not names:
        return
    finder = _NotUsed(names)
    sys.meta_path.insert(0, finder)
    context.call_on_close(lambda: sys.meta_path.remove(finder))


# pyarrow's allocator (mimalloc) keeps memory its threads freed for reuse, unbounded
# by the chunks in flight: a 5,000,000-row CSV load into PostgreSQL held at most 40 MB
# of Arrow data at any time (the read-ahead queues bound it), yet peaked at 247-271 MB
# RSS, 110 MB of it freed pages the allocator kept. Returned to the system at once
# instead: 196-208 MB, with the same CPU time within noise (1,000,000 rows).
_FREED_MEMORY_OPTIONS = {"MIMALLOC_PURGE_DELAY": "0", "MIMALLOC_ARENA_EAGER_COMMIT": "0"}


def _return_freed_memory() -> None:
    """Ask pyarrow's allocator to return freed memory to the system promptly. It reads
    these options once, when pyarrow is loaded, for the rest of the process: only the
    program (``run``) sets them, as the environment would, before it loads pyarrow; a
    user's own settings win, and they are taken back when the command ends. A process
    that calls ``main([...])`` and goes on keeps pyarrow's defaults."""
    context = _in_program()
    if context is None or "pyarrow" in sys.modules:
        return
    added = {k: v for k, v in _FREED_MEMORY_OPTIONS.items() if k not in os.environ}
    os.environ.update(added)
    context.call_on_close(lambda: [os.environ.pop(k, None) for k in added])


def _rows_unless_columnar(
    source: Any,
    store: Store,
    file: str,
    fmt: str | None,
    nulls: tuple[str, ...],
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> Any:
    """The row reader where the database has no columnar write (DynamoDB): its rows
    would be made again from the batches, one dict at a time."""
    if source.batches is None or store.capabilities.columnar:
        return source
    source.close()
    try:
        source = open_source(file, fmt, null=nulls, encoding=encoding, delimiter=delimiter)
    except SourceError as error:
        _fail(str(error))
    if source.format == "parquet" and not store.capabilities.declared_columns:
        source.rows = _typeless_as_text(source.rows)
    return source


# Values of a Parquet file that a store without column types (DynamoDB) has no type
# for: there they are their ISO 8601 (or canonical) text, as a CSV file's are, instead
# of a refusal of every row that holds one.
_TEXT_WHERE_UNTYPED = (dt.date, dt.time, uuid.UUID)


def _typeless_as_text(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    text = COERCERS["text"]
    for row in rows:
        yield tuple(text(v) if isinstance(v, _TEXT_WHERE_UNTYPED) else v for v in row)


def _open_input(
    file: str,
    fmt: str | None,
    nulls: tuple[str, ...],
    encoding: str,
    delimiter: str | None,
    *,
    ragged: bool = True,
) -> Any:
    """The file as Arrow record batches (pyarrow's readers, then the columnar path)
    where pyarrow reads it; else the row reader (standard input, JSON Lines, text in
    another encoding than UTF-8)."""
    return open_arrow(
        file, fmt, null=nulls, ragged=ragged, encoding=encoding, delimiter=delimiter
    ) or open_source(file, fmt, null=nulls, encoding=encoding, delimiter=delimiter)


def _reader_name(source: Any) -> str:
    """Which reader took the file: ``arrow`` (pyarrow's, the columnar path) or ``rows``."""
    return "arrow" if source.batches is not None else "rows"


def _type_option(values: tuple[str, ...]) -> dict[str, str]:
    types: dict[str, str] = {}
    for item in values:
        column, sep, kind = item.partition("=")
        column, kind = column.strip(), kind.strip().lower()
        if not sep or not column:
            _fail(f"--type takes COLUMN=TYPE, not {item!r}")
        if kind not in TYPES:
            _fail(f"--type {item}: unknown type {kind!r}; expected one of {', '.join(TYPES)}")
        types[column] = kind
    return types


def _open_rejects(path: str | None, *, append: bool) -> Any:
    if path is None:
        return None
    try:
        return open(path, "a" if append else "w", encoding="utf-8")
    except OSError as error:
        _fail(f"cannot write the rejects file {path}: {error.strerror or error}")


def _committed_note(
    report: Report | None, failure: BaseException | None, *, resumable: bool
) -> str:
    if failure is None or report is None or isinstance(failure, DataError):
        return ""
    done = report.rows_in
    if not done:
        return "nothing was committed"
    note = f"rows 1-{done:,} were committed (the last committed row is row {done:,})"
    if resumable:
        note += "; --resume continues after it"
    return note


# Library parameter names in messages the CLI passes on, and the CLI's words for them.
_CLI_WORDS = (
    ("pass key= to upsert()", "pass --key"),
    ("pass key= to update()", "pass --key"),
    ("pass key= to delete()", "pass --key"),
    ("pass key= to insert()", "pass --key"),
    (" (the first row's columns, or columns=)", " (the file's columns)"),
    (" to set besides the key", " to set besides the --key columns"),
    ("max_rejects=", "--max-rejects "),
    ("resume=True", "--resume"),
    ("force=True", "--force"),
    ("loaded this input", "loaded this file"),
    ("the whole input", "the whole file"),
    ("key=", "--key"),
)


def _cli_words(message: str) -> str:
    for library, cli in _CLI_WORDS:
        message = message.replace(library, cli)
    return message


def _dry_run(
    file: str,
    fmt: str | None,
    table: str,
    key: tuple[str, ...] | None,
    nulls: tuple[str, ...],
    overrides: dict[str, str],
    as_json: bool,
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> None:
    try:
        if file == "-":
            with open_source(
                file, fmt, null=nulls, encoding=encoding, delimiter=delimiter
            ) as source:
                inference, _ = infer_types(
                    source.columns, source.rows, types=overrides, typed=source.format == "jsonl"
                )
        else:
            inference = infer_file(
                file, fmt, null=nulls, types=overrides, encoding=encoding, delimiter=delimiter
            )
    except SourceError as error:
        _fail(str(error))
    _check_overrides(inference, overrides, key)
    if as_json:
        data = {"table": table, "key": list(key or ()), **inference.as_dict()}
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    read = f"{inference.rows:,} rows" + ("" if inference.complete else " (a sample)")
    console.print(f"{table} (dry run: nothing written; types from {read})", highlight=False)
    from rich.table import Table

    grid = Table()
    grid.add_column("column")
    grid.add_column("type")
    grid.add_column("key")
    key_cols = key or ()
    for column in inference.columns:
        in_key = str(key_cols.index(column) + 1) if column in key_cols else ""
        kind = inference.types[column] + (" (--type)" if column in overrides else "")
        grid.add_row(column, kind, in_key)
    console.print(grid)
    _print_missing(inference, dry_run=True)


def _check_overrides(
    inference: Inference, overrides: dict[str, str], key: tuple[str, ...] | None
) -> None:
    unknown = [c for c in overrides if c not in inference.types]
    if unknown:
        _fail(f"--type names {unknown[0]!r}, which is not a column of the file")
    missing_key = [k for k in key or () if k not in inference.types]
    if missing_key:
        _fail(f"--key names {missing_key[0]!r}, which is not a column of the file")


def _missing_lines(inference: Inference | None, *, dry_run: bool = False) -> list[str]:
    if inference is None:
        return []
    lines = []
    for hint in inference.missing:
        spelled = ", ".join(f"{t!r} ({n:,})" for t, n in hint.tokens.items())
        flags = " ".join(f"--null {_shell_word(t)}" for t in hint.tokens)
        lines.append(
            f"column {hint.column!r} was made text: it would be {hint.type} but for {spelled}; "
            f"if these mean a missing value, load it with {flags}"
        )
    for column, text in inference.inexact.items():
        if dry_run:
            lines.append(
                f"column {column!r} holds {text}, which has more digits than a float "
                f"keeps: where decimals are stored as floats (SQLite), the load makes it "
                f"float; --type {_shell_word(column)}=text keeps every digit"
            )
        elif inference.types[column] == "float":
            lines.append(
                f"column {column!r} was made float: {text} has more digits than this "
                f"database keeps in a decimal, and is stored as the nearest float "
                f"({float(text)!r}); to keep every digit, load it with "
                f"--type {_shell_word(column)}=text"
            )
    return lines


def _shell_word(token: str) -> str:
    return token if token.isalnum() or token in ("-", "N/A") else f"'{token}'"


def _print_missing(inference: Inference | None, *, dry_run: bool = False) -> None:
    for line in _missing_lines(inference, dry_run=dry_run):
        err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)


@main.command()
@db_option
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many of the latest runs to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def runs(db: str, last: int, as_json: bool) -> None:
    """List the latest runs recorded in the database's run log (bulkops_runs), newest
    first: verb, table, status, counts, statements, retries, time and label.

    A run still 'running' that no process is working on was interrupted (a crash, a
    kill): `bulkops load --resume` continues it.
    """
    with _open_store(db) as store:
        try:
            found = store.runs(last)
        except BulkError as error:
            _fail(str(error))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in found], indent=2))
        return
    if not found:
        err_console.print(f"no runs recorded in {db}", highlight=False)
        return
    _print_runs(found)


_STATUS_STYLE = {
    "ok": "green",
    "running": "yellow",
    "rejected": "yellow",
    "stopped": "red",
    "failed": "red",
    "interrupted": "red",
    "rolled back": "red",
}


def _print_runs(found: list[Run]) -> None:
    from rich.table import Table

    table = Table(title="bulkops runs", title_justify="left")
    for name, justify in [
        ("id", "right"), ("started (UTC)", "left"), ("verb", "left"), ("table", "left"),
        ("status", "left"), ("rows in", "right"), ("written", "right"),
        ("rejected", "right"), ("statements", "right"), ("retries", "right"),
        ("time", "right"), ("label", "left"),
    ]:  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for run in found:
        counts = run.counts
        written = sum(counts.get(k, 0) for k in ("inserted", "updated", "deleted"))
        style = _STATUS_STYLE.get(run.status, "")
        started = run.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

        def number(value: int | None) -> str:
            return "" if value is None else f"{value:,}"

        table.add_row(
            str(run.id),
            started,
            run.verb,
            run.table,
            f"[{style}]{run.status}[/]" if style else run.status,
            number(counts.get("rows_in")),
            number(written if counts else None),
            number(counts.get("rejected")),
            number(run.statements),
            number(run.retries),
            "" if run.elapsed is None else f"{run.elapsed:.2f}s",
            run.label or "",
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a log: 80 columns would crush the table
        console = Console(width=200)
    console.print(table)
    for run in found:
        if run.error:
            err_console.print(f"run {run.id}: {run.error}", highlight=False)


@main.group()
def seq() -> None:
    """Named sequences of unique formatted numbers (lot, serial, invoice numbers)."""


@seq.command("allocate")
@click.argument("name")
@click.argument("count", type=click.IntRange(min=1))
@db_option
@click.option("--prefix", default="", help="Text before the number; may hold {year} {month} {day}.")
@click.option("--padding", type=click.IntRange(min=0), default=0, help="Zero-pad to this width.")
@click.option("--suffix", default="", help="Text after the number; may hold {year} {month} {day}.")
@click.option(
    "--start", type=int, default=1, show_default=True, help="First number of a new sequence."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the values here (one per line) instead of standard output.",
)
def seq_allocate(
    name: str,
    count: int,
    db: str,
    prefix: str,
    padding: int,
    suffix: str,
    start: int,
    out: str | None,
) -> None:
    """Allocate COUNT new values of sequence NAME (e.g. "lot:42") in one round trip.

    Values never repeat within a sequence, even across processes; gaps are allowed. A
    number wider than --padding is written in full.
    """
    with _open_store(db) as store:
        try:
            sequence = store.sequence(
                name, prefix=prefix, padding=padding, suffix=suffix, start=start
            )
            values = sequence.allocate(count)
        except (BulkError, ValueError) as error:
            _fail(str(error))
    text = "\n".join(values) + "\n"
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        err_console.print(f"{count:,} values of {name!r} written to {out}", highlight=False)
    else:
        click.echo(text, nl=False)


def _run_load(
    store: Store,
    mode: str,
    table: str,
    columns: list[str] | None,
    rows: Iterator[Any],
    key: tuple[str, ...] | None,
    on_conflict: Literal["error", "ignore"],
    options: dict[str, Any],
) -> Report:
    if mode == "insert":
        return store.insert(table, rows, columns=columns, on_conflict=on_conflict, **options)
    if mode == "upsert":
        return store.upsert(table, rows, columns=columns, key=key, **options)
    if mode == "update":
        return store.update(table, rows, columns=columns, key=key, **options)
    key_cols = store.table(table).resolve_key(key, "delete")
    return store.delete(table, _keys_of(rows, columns, key_cols), key=key_cols, **options)


def _keys_of(rows: Any, columns: list[str] | None, key: tuple[str, ...]) -> Any:
    if hasattr(rows, "schema"):  # Arrow record batches: their key columns
        missing = [k for k in key if k not in rows.schema.names]
        if missing:
            raise SchemaError(f"the file has no key column {', '.join(map(repr, missing))}")
        return _arrow_keys(rows, key)
    return _tuple_keys(rows, columns, key)


def _arrow_keys(batches: Any, key: tuple[str, ...]) -> Any:
    import pyarrow as pa

    schema = pa.schema([batches.schema.field(k) for k in key])
    return pa.RecordBatchReader.from_batches(schema, (b.select(list(key)) for b in batches))


def _tuple_keys(
    rows: Iterator[Any], columns: list[str] | None, key: tuple[str, ...]
) -> Iterator[Any]:
    if columns is None:  # mappings
        yield from rows
        return
    missing = [k for k in key if k not in columns]
    if missing:
        raise SchemaError(f"the file has no key column {', '.join(map(repr, missing))}")
    pick = itemgetter(*(columns.index(k) for k in key))
    for row in rows:
        yield pick(row)


def _ensure_table(
    store: Store,
    table: str,
    file: str,
    fmt: str | None,
    columns: list[str] | None,
    rows: Iterator[Any],
    key: tuple[str, ...] | None,
    create: bool,
    nulls: tuple[str, ...],
    overrides: dict[str, str],
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> tuple[list[str] | None, Iterator[Any], Inference | None]:
    """Create the table from the file if it is missing (and allowed): its columns and
    types inferred from every row of a file, or from the first rows of stdin."""
    try:
        store.table(table)
        return columns, rows, None
    except SchemaError as error:
        # Where columns are not declared (DynamoDB), inferred types mean nothing: such
        # tables are made with their keys and capacity settings elsewhere.
        if not store.capabilities.declared_columns:
            raise
        if error.case_variants:
            # Creating "artist" beside "Artist" would load the rows where nobody looks.
            raise SchemaError(
                f"{error}; not created beside a table whose name differs only in case: "
                "give --table its exact name"
            ) from None
        if not create:
            raise SchemaError(
                f"{error} (without --no-create it is created from the file)"
            ) from None
    try:
        if file == "-":
            inference, rows = infer_types(
                columns, rows, INFER_SAMPLE_ROWS, types=overrides, typed=fmt == "jsonl"
            )
        else:
            inference = infer_file(
                file, fmt, null=nulls, types=overrides, encoding=encoding, delimiter=delimiter
            )
    except SourceError as error:
        raise SourceError(f"reading the file to infer its columns' types: {error}") from error
    _check_overrides(inference, overrides, key)
    if not inference.columns:
        raise SchemaError(f"cannot create {table!r}: the input has no columns")
    if store.capabilities.decimal_digits is not None:
        # Decimals stored as floats (SQLite's REAL) would refuse these values: the
        # column is made float, which takes the nearest one (a note says so).
        for column in inference.inexact:
            inference.types[column] = "float"
    try:
        store.create_table(table, inference.types, key or ())
    except BulkError as error:
        # Another load created it at the same moment ("already exists"): use it.
        try:
            store.table(table)
        except SchemaError:
            raise error from None
    # JSON Lines rows stay mappings, each with its own keys: the library writes the
    # union, and what an object leaves out is not written (NULL in the new table on
    # insert; left as it is by an upsert, as into an existing table).
    if file == "-" and not inference.complete:
        rows = _explain_mismatch(rows)
    return columns, rows, inference


def _explain_mismatch(rows: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from rows
    except TypeMismatch as error:
        if error.type == "(no such column)":
            raise SourceError(
                f"<stdin>, row {error.row}: key {error.column!r} was not in the first "
                f"{error.sample:,} rows the table was created from; load from a file so "
                "that every row is read first"
            ) from error
        raise SourceError(
            f"<stdin>, row {error.row}: {error.value!r} in column {error.column!r} does not fit "
            f"the type {error.type} inferred from the first {error.sample:,} rows; pass "
            f"--type {error.column}=TYPE (e.g. text), or load from a file so that every row "
            "is read first"
        ) from error


class _ProgressBar:
    def __init__(self, source: Any) -> None:
        # Imported only where a bar is drawn (a terminal): a quiet run or a pipe never does.
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.source = source
        total = source.total_bytes
        columns: list[Any] = [TextColumn("[bold]loading"), BarColumn()]
        if total:
            columns += [DownloadColumn(), TaskProgressColumn(), TimeRemainingColumn()]
        else:
            columns += [MofNCompleteColumn()]
        columns += [
            TextColumn("{task.fields[rows]} rows, {task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
        ]
        self.progress = Progress(*columns, console=err_console, transient=True)
        self.task = self.progress.add_task("load", total=total, rows=0, rate="-")
        self.started = time.perf_counter()

    def callback(self, report: Report) -> None:
        completed = self.source.bytes_read() if self.source.total_bytes else report.rows_in
        # The Report's own clock stops only when the call ends: time the bar here.
        seconds = time.perf_counter() - self.started
        self.progress.update(
            self.task,
            completed=completed,
            rows=f"{report.rows_in:,}",
            rate=f"{report.rows_in / seconds:,.0f}" if seconds > 0 else "-",
        )

    def __enter__(self) -> _ProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)


def _progress_bar(source: Any, quiet: bool) -> _ProgressBar | None:
    # Quiet when output is not a terminal: logs and pipes get the summary only.
    if quiet or not err_console.is_terminal:
        return None
    return _ProgressBar(source)


def _open_store(url: str, *, run_log: bool = False) -> Store:
    # Imported here, not with the command: SQLAlchemy and the driver load while a
    # file the command reads is parsed already (``load``), and ``--help`` needs none.
    from .api import connect

    try:
        # On by default where the database can keep it (not DynamoDB: see --resume).
        return connect(url, run_log="auto" if run_log else False)
    except BulkError as error:
        _fail(str(error))
    except Exception as error:  # a malformed URL, a file that cannot be opened, ...
        _fail(f"cannot open database {url!r}: {error}")


def _finish(
    report: Report | SyncReport | None,
    failure: BaseException | None,
    *,
    as_json: bool,
    quiet: bool,
    rejects: str | None,
    inference: Inference | None = None,
    committed: str = "",
    reader: str | None = None,
) -> None:
    if as_json:
        data = report.as_dict() if report else {}
        if reader is not None:
            data["reader"] = reader
        if failure is not None:
            data["error"] = _cli_words(str(failure))
        if committed:
            data["committed"] = committed
        if inference is not None:
            data["created"] = inference.as_dict()
            data["notes"] = _missing_lines(inference)
        click.echo(json.dumps(jsonable(data), indent=2))
    else:
        if isinstance(report, SyncReport) and not quiet:
            _print_sync_summary(report, rejects)
        elif isinstance(report, Report) and not quiet:
            _print_summary(report, rejects)
        _print_missing(inference)
        if failure is not None:
            message = _cli_words(str(failure))
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            if committed:
                err_console.print(escape(committed), highlight=False)
    if failure is not None and not isinstance(failure, DataError):
        sys.exit(EXIT_FAILED)
    if failure is not None or report is None or not report.ok:
        sys.exit(EXIT_REJECTED)


def _print_summary(report: Report, rejects: str | None) -> None:
    console = Console()
    from rich.table import Table

    table = Table(title=f"{report.verb} {report.table}", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows in", f"{report.rows_in:,}")
    for name in (
        "inserted",
        "updated",
        "upserted",
        "unchanged",
        "ignored",
        "duplicates",
        "deleted",
        "not_found",
        "skipped",
    ):
        value = getattr(report, name)
        if value:
            table.add_row(name.replace("_", " "), f"{value:,}")
    _add_rejected_rows(table, report)
    table.add_row("chunks / statements", f"{report.chunks:,} / {report.statements:,}")
    table.add_row("retries", f"{report.retries:,}")
    table.add_row("time", f"{report.elapsed:.2f}s ({report.rows_per_second:,.0f} rows/s)")
    console.print(table)
    _print_rejections(console, report, rejects)
    if report.stopped:
        console.print(f"[bold red]{escape(_cli_words(report.stopped))}[/]")


def _add_rejected_rows(table: Table, report: Report | SyncReport) -> None:
    table.add_row("rejected", f"[red]{report.rejected:,}[/]" if report.rejected else "0")
    if report.failed:
        table.add_row("failed (not written, retry them)", f"[red]{report.failed:,}[/]")


def _print_rejections(console: Console, report: Report | SyncReport, rejects: str | None) -> None:
    if not report.rejections:
        return
    if rejects:
        console.print(f"rejected rows written to {rejects}")
        return
    for r in report.rejections[:5]:
        where = f"column {r.column!r}: " if r.column else ""
        reason = _cli_words(r.reason)
        console.print(f"  row {r.row} (key {r.key!r}): {where}{reason}", highlight=False)
    if len(report.rejections) > 5:
        console.print(f"  ... and {len(report.rejections) - 5} more (use --rejects FILE)")


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------------------- sync


def _key_option(key: str | None) -> tuple[str, ...] | None:
    """``--key a,b`` as column names (None: the table's primary key)."""
    return tuple(k.strip() for k in key.split(",") if k.strip()) if key else None


def _where_option(values: tuple[str, ...]) -> dict[str, str]:
    where: dict[str, str] = {}
    for item in values:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            _fail(f"--where takes COLUMN=VALUE, not {item!r}")
        where[column.strip()] = value
    return where


@main.command()
@click.argument("file")
@click.option("--table", "-t", required=True, help="Target table.")
@click.option("--key", help="Key column(s), comma-separated (default: the primary key).")
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATS)),
    help="Input format (default: from the file name).",
)
@click.option(
    "--delete-missing", is_flag=True, help="Delete rows of the table (or scope) the file lacks."
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="The part of the table the file stands for (repeatable); rows outside it are "
    "never changed or deleted.",
)
@click.option("--dry-run", is_flag=True, help="Find and count the difference; write nothing.")
@click.option(
    "--changes-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Also store the difference as a changeset (gzip JSON Lines) at this path.",
)
@click.option("--chunk-size", type=click.IntRange(min=1), help="Rows per chunk.")
@on_error_option
@click.option("--rejects", type=click.Path(dir_okay=False), help="Write rejected rows here.")
@click.option("--max-rejects", type=click.IntRange(min=0), help="Stop after this many rejects.")
@null_option
@encoding_option
@delimiter_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary table.")
def sync(
    file: str,
    table: str,
    key: str | None,
    db: str,
    fmt: str | None,
    delete_missing: bool,
    where: tuple[str, ...],
    dry_run: bool,
    changes_out: str | None,
    chunk_size: int | None,
    on_error: Literal["isolate", "raise"],
    rejects: str | None,
    max_rejects: int | None,
    nulls: tuple[str, ...],
    encoding: str,
    delimiter: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Make TABLE hold what FILE holds, writing only the difference: rows added,
    changed (compared on the file's columns) and, with --delete-missing, deleted.

    An unchanged file meeting a table that bulkops has not written since the last sync
    is skipped without reading it. Exit status as for load.
    """
    _skip_unused()
    _return_freed_memory()
    key_cols = _key_option(key)
    scope = _where_option(where)
    try:
        digest = _file_id(file_digest(file), encoding, nulls, delimiter) if file != "-" else None
        source = _open_input(file, fmt, nulls, encoding, delimiter, ragged=False)
        # JSON Lines: compared on every key the file's objects have (one an object
        # leaves out is NULL), not only on the first object's keys.
        union = (
            file_columns(file, fmt, encoding=encoding, delimiter=delimiter)
            if source.columns is None and file != "-"
            else None
        )
    except SourceError as error:
        _fail(str(error))
    report: SyncReport | None = None
    failure: BulkError | SourceError | None = None
    with ExitStack() as held, _open_store(db) as store:
        source = held.enter_context(
            _rows_unless_columnar(source, store, file, fmt, nulls, encoding, delimiter)
        )
        status = nullcontext() if quiet or as_json else err_console.status(f"sync {table}")
        try:
            with status:
                rows = source.batches if source.batches is not None else source.rows
                report = store.sync(
                    table, rows, key=key_cols, columns=source.columns or union,
                    delete_missing=delete_missing, where=scope, dry_run=dry_run,
                    source_id=digest, changes_out=changes_out, chunk_size=chunk_size,
                    on_error=on_error, rejects=rejects, max_rejects=max_rejects,
                )  # fmt: skip
        except (BulkError, SourceError) as error:
            failure = error
    _finish(
        report, failure, as_json=as_json, quiet=quiet, rejects=rejects,
        reader=_reader_name(source),
    )  # fmt: skip


@main.command()
@click.argument("changes", type=click.Path(exists=True, dir_okay=False))
@db_option
@click.option("--table", "-t", help="Target table (default: the one the changeset was made for).")
@click.option("--chunk-size", type=click.IntRange(min=1), help="Rows per chunk.")
@on_error_option
@click.option("--rejects", type=click.Path(dir_okay=False), help="Write rejected rows here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No summary table.")
def apply(
    changes: str,
    db: str,
    table: str | None,
    chunk_size: int | None,
    on_error: Literal["isolate", "raise"],
    rejects: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Apply a changeset (from `bulkops sync --changes-out` or `db.diff(...)`) to a
    table. The whole file is checked first: a truncated or corrupt changeset is
    refused and nothing is applied."""
    report: SyncReport | None = None
    failure: BulkError | None = None
    with _open_store(db) as store:
        try:
            report = store.apply(
                changes, table=table, chunk_size=chunk_size, on_error=on_error, rejects=rejects
            )
        except BulkError as error:
            failure = error
    _finish(report, failure, as_json=as_json, quiet=quiet, rejects=rejects)


def _print_sync_summary(report: SyncReport, rejects: str | None) -> None:
    console = Console()
    title = f"{report.verb} {report.table}"
    if report.dry_run:
        title += " (dry run: nothing written)"
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows in", f"{report.rows_in:,}")
    if report.up_to_date:
        table.add_row("skipped", "unchanged since the last sync")
    for name in ("added", "changed", "deleted", "unchanged", "duplicates"):
        table.add_row(name, f"{getattr(report, name):,}")
    _add_rejected_rows(table, report)
    table.add_row("statements", f"{report.statements:,}")
    table.add_row("bytes of changes", f"{report.bytes:,}")
    table.add_row("time", f"{report.elapsed:.2f}s")
    console.print(table)
    _print_rejections(console, report, rejects)


# --------------------------------------------------------------------------- bench


@main.command()
@click.option(
    "--db",
    "url",
    # Not $BULKOPS_DB: a benchmark should not land on the database you work on unasked.
    default=None,
    help="Database URL to run on (default: a temporary SQLite database). Every run gets a "
    "fresh database: a new SQLite file next to the one named, a new PostgreSQL schema "
    "dropped afterwards, or new DynamoDB tables (named with a prefix of the run's own) "
    "deleted afterwards.",
)
@click.option(
    "--size",
    "sizes",
    multiple=True,
    type=click.IntRange(min=1),
    help="Size to run each workload at (views, scores, orders, escrows, lots, items); repeat "
    "for several (default: each workload's own sizes).",
)
@click.option(
    "--workload",
    "-w",
    "workloads",
    multiple=True,
    help="Workload to run (views, scores, orders, escrow, lots on SQLite and PostgreSQL; "
    "kv on DynamoDB); repeat for several (default: every workload that runs on the "
    "database).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also draw the speed-up across sizes to this PNG file (needs matplotlib: "
    "pip install 'bulkops[plot]').",
)
def bench(
    url: str | None,
    sizes: tuple[int, ...],
    workloads: tuple[str, ...],
    as_json: bool,
    plot_path: str | None,
) -> None:
    """Run the built-in workloads, naive code and bulkops, on fresh copies of the same data.

    For each workload and size: statements sent and time taken by each implementation,
    how many times fewer statements bulkops sent, its speed-up, and whether both left
    the database in the same end state (checked; a difference fails the command).
    """
    from .bench.runner import run_bench

    if plot_path is not None:
        from .bench.plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()  # before the runs, not after a minute of them
        except PlotUnavailable as error:
            _fail(str(error))
    quiet = as_json or not err_console.is_terminal
    status = nullcontext() if quiet else err_console.status("bench")
    with status as spinner:

        def progress(what: str) -> None:
            if spinner is not None:
                spinner.update(f"running {what}")

        try:
            results = run_bench(
                url, workloads=workloads or None, sizes=sizes or None, progress=progress
            )
        except (BulkError, ValueError) as error:
            _fail(str(error))
    if plot_path is not None:
        from .bench.plot import plot_speedups

        plot_speedups(results, plot_path)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        _print_bench(results, plot_path)
    different = [r for r in results if not r.same_end_state]
    if different:
        for r in different:
            err_console.print(
                f"[bold red]error:[/] {r.workload} at size {r.size}: naive and bulkops end states "
                f"differ ({escape(r.difference or '')})",
                highlight=False,
            )
        sys.exit(EXIT_FAILED)


def _print_bench(results: list[Any], plot_path: str | None) -> None:
    console = Console()
    backends = ", ".join(sorted({r.backend for r in results})) or "-"
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"bulkops bench on {backends}", title_justify="left", box=box.SIMPLE_HEAD,
        pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    for header in ("workload", "size", "stmts\nnaive", "stmts\nbulkops", "fewer\nstmts",
                   "time\nnaive", "time\nbulkops", "speed-up", "same\nstate"):  # fmt: skip
        table.add_column(header, justify="left" if header == "workload" else "right")
    for r in results:
        table.add_row(
            r.workload,
            f"{r.size:,}",
            f"{r.naive.statements:,}",
            f"{r.bulkops.statements:,}",
            f"{r.reduction:,.0f}x",
            f"{r.naive.seconds:.3f}s",
            f"{r.bulkops.seconds:.3f}s",
            f"{r.speedup:,.1f}x",
            "[green]✓[/]" if r.same_end_state else "[bold red]✗[/]",
        )
    console.print(table)
    console.print(
        "Statements: every statement sent (on DynamoDB: every request), counted in the "
        "driver for both (transaction control not counted); times: wall clock, setup "
        "excluded.",
        highlight=False,
    )
    if plot_path is not None:
        console.print(f"speed-up plot written to {plot_path}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main()
