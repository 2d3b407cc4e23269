"""What a bulk call did: the Report, its Rejections and the rejects file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import RejectsWriteError
from .jsoncodec import dumps, to_json

__all__ = ["Rejection", "RejectsFile", "Report", "SyncReport", "jsonable", "write_rejects"]


@dataclass(frozen=True)
class Rejection:
    """A row that was not written, with why and its original values.

    ``row`` is the 1-based position of the row in the input the call was given.
    """

    row: int
    key: Any
    reason: str
    values: Any
    column: str | None = None
    code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "key": jsonable(self.key),
            "column": self.column,
            "code": self.code,
            "reason": self.reason,
            "values": jsonable(self.values),
        }


# The counts a row can end in; every input row ends in exactly one of them.
OUTCOMES = (
    "inserted",
    "updated",
    "upserted",
    "unchanged",
    "ignored",
    "duplicates",
    "deleted",
    "not_found",
    "refused",
    "rejected",
    "failed",
    "skipped",
)


@dataclass
class Report:
    """Counts and costs of one bulk call.

    Every row given ends in exactly one outcome, so ``rows_in`` equals the sum of
    ``inserted + updated + unchanged + ignored + duplicates + deleted + not_found +
    refused + rejected + skipped`` (``accounted``). ``duplicates`` are rows collapsed
    because a later row in the same chunk had the same key (the last one wins).
    ``skipped``: rows of chunks an earlier, interrupted run had committed (a resumed
    load reads them but does not write them again). ``refused``:
    ``adjust`` keys whose result would leave the bounds (``refused_keys`` names them;
    ``not_found_keys`` the keys ``adjust`` did not find). ``upserted``: rows an upsert
    wrote where the database cannot tell an insert from an update (DynamoDB).
    ``failed``: rows that were valid but not written because the database kept
    refusing them (DynamoDB throttling, unprocessed items) until the retry policy's
    attempts ran out; ``failures`` lists them with their values, to be sent again.
    """

    verb: str
    table: str
    rows_in: int = 0
    inserted: int = 0
    updated: int = 0
    upserted: int = 0
    unchanged: int = 0
    ignored: int = 0
    duplicates: int = 0
    deleted: int = 0
    not_found: int = 0
    refused: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    chunks: int = 0
    statements: int = 0
    retries: int = 0
    elapsed: float = 0.0
    rejections: list[Rejection] = field(default_factory=list, repr=False)
    failures: list[Rejection] = field(default_factory=list, repr=False)
    refused_keys: list[Any] = field(default_factory=list, repr=False)
    not_found_keys: list[Any] = field(default_factory=list, repr=False)
    stopped: str | None = None

    @property
    def accounted(self) -> int:
        return sum(getattr(self, name) for name in OUTCOMES)

    @property
    def written(self) -> int:
        """Rows that changed the table: inserted + updated + upserted + deleted."""
        return self.inserted + self.updated + self.upserted + self.deleted

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no row was rejected, refused or failed and the run was not stopped."""
        return (
            self.rejected == 0 and self.refused == 0 and self.failed == 0 and self.stopped is None
        )

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

    def merge(
        self, other: Report, renumber: Callable[[Rejection], Rejection] | None = None
    ) -> None:
        """Add ``other``'s counts, costs and listed rows to this Report (e.g. the
        partitions of one load); ``renumber``: to name its rejected and failed rows by
        their position in this call's input. ``elapsed`` is left alone (parts may have
        run at the same time: the caller times the whole)."""
        same = renumber or (lambda r: r)
        counts = {name: getattr(other, name) for name in OUTCOMES}
        self.add(rows_in=other.rows_in, chunks=other.chunks, statements=other.statements,
                 retries=other.retries, **counts)  # fmt: skip
        self.rejections += [same(r) for r in other.rejections]
        self.failures += [same(r) for r in other.failures]
        self.refused_keys += other.refused_keys
        self.not_found_keys += other.not_found_keys
        if self.stopped is None:
            self.stopped = other.stopped

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["rejections"] = [r.as_dict() for r in self.rejections]
        data["failures"] = [r.as_dict() for r in self.failures]
        data["refused_keys"] = jsonable(self.refused_keys)
        data["not_found_keys"] = jsonable(self.not_found_keys)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["elapsed"] = round(self.elapsed, 6)
        return data

    def __str__(self) -> str:
        parts = [f"{name} {getattr(self, name)}" for name in OUTCOMES if getattr(self, name)]
        outcome = ", ".join(parts) or "nothing to do"
        return (
            f"{self.verb} {self.table}: {self.rows_in} rows in -> {outcome}; "
            f"{self.chunks} chunks, {self.statements} statements, {self.retries} retries, "
            f"{self.elapsed:.3f}s"
        )


# The outcomes of a sync's source rows; every source row ends in exactly one of them.
SYNC_OUTCOMES = ("added", "changed", "unchanged", "duplicates", "rejected", "failed")


@dataclass
class SyncReport:
    """What ``Store.sync`` (or ``diff``, ``apply``) found and did.

    Every source row ends in exactly one of ``added``, ``changed``, ``unchanged``,
    ``duplicates`` (an earlier row with a key a later row also has; the last one wins),
    ``rejected`` (with its reason in ``rejections``) or ``failed`` (valid, but the
    database kept refusing it; in ``failures``), so ``rows_in == accounted``.
    ``deleted`` counts target rows that the source no longer has (``delete_missing``).
    ``up_to_date``: the source matched the last sync of this table and scope (its
    ``source_id``, or every row's digest) and the table was not written through bulkops
    since, so nothing was sent.
    ``bytes``: the size of the difference as JSON Lines (what was, or with ``dry_run``
    would be, sent); ``statements``: statements or requests sent. The ``*_keys`` lists
    are filled when the call asked for ``list_keys=True``.
    """

    table: str
    verb: str = "sync"
    rows_in: int = 0
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    up_to_date: bool = False
    dry_run: bool = False
    statements: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    digest: str | None = None
    rejections: list[Rejection] = field(default_factory=list, repr=False)
    failures: list[Rejection] = field(default_factory=list, repr=False)
    added_keys: list[Any] = field(default_factory=list, repr=False)
    changed_keys: list[Any] = field(default_factory=list, repr=False)
    deleted_keys: list[Any] = field(default_factory=list, repr=False)

    @property
    def accounted(self) -> int:
        return sum(getattr(self, name) for name in SYNC_OUTCOMES)

    @property
    def changes(self) -> int:
        """Rows written (or, with ``dry_run``, to be written): added + changed + deleted."""
        return self.added + self.changed + self.deleted

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.failed == 0

    def take_rejects(
        self, other: Report | SyncReport, renumber: Callable[[Rejection], Rejection] | None = None
    ) -> None:
        """Add ``other``'s rejected and failed rows (``renumber``: to name them by their
        position in this call's input)."""
        same = renumber or (lambda r: r)
        self.rejected += other.rejected
        self.rejections += [same(r) for r in other.rejections]
        self.failed += other.failed
        self.failures += [same(r) for r in other.failures]

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["rejections"] = [r.as_dict() for r in self.rejections]
        data["failures"] = [r.as_dict() for r in self.failures]
        for name in ("added_keys", "changed_keys", "deleted_keys"):
            data[name] = jsonable(data[name])
        data["elapsed"] = round(self.elapsed, 6)
        return data

    def __str__(self) -> str:
        if self.up_to_date:
            outcome = "skipped: unchanged since the last sync (same digest)"
        else:
            parts = [f"{n} {getattr(self, n)}" for n in ("added", "changed", "deleted")]
            parts += [f"{n} {getattr(self, n)}" for n in SYNC_OUTCOMES[2:] if getattr(self, n)]
            outcome = ", ".join(parts)
        dry = " (dry run: nothing written)" if self.dry_run else ""
        return (
            f"{self.verb} {self.table}: {self.rows_in} rows in -> {outcome}{dry}; "
            f"{self.statements} statements, {self.bytes} bytes of changes, "
            f"{self.elapsed:.3f}s"
        )


def jsonable(value: Any) -> Any:
    """A JSON-serialisable form of a value, for rejects files and ``--json`` output:
    the one form of ``bulkops.jsoncodec`` (decimals, bytes and sets tagged so that
    they read back as what they were)."""
    return to_json(value)


class RejectsFile:
    """Writes rejections as JSON Lines, one object per rejected row.

    Accepts a path (opened lazily, so a run without rejects leaves no file), an open
    text file, or a list (rejections are appended to it).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str] | list[Any]) -> None:
        self._target = target
        self._file: IO[str] | None = None
        self._owns = False
        self.count = 0

    def write(self, rejections: Iterable[Rejection]) -> None:
        """Write ``rejections``; if the file cannot take them, raise RejectsWriteError
        naming their rows (the call then stops before its next commit)."""
        batch = list(rejections)
        try:
            for rejection in batch:
                self.count += 1
                if isinstance(self._target, list):
                    self._target.append(rejection)
                    continue
                self._stream().write(dumps(rejection.as_dict()) + "\n")
            if self._file is not None:
                self._file.flush()
        except OSError as error:
            rows = ", ".join(str(r.row) for r in batch[:10]) + (" ..." if len(batch) > 10 else "")
            raise RejectsWriteError(
                f"cannot write rejected rows to the rejects file ({error.strerror or error}); "
                f"rows {rows} were rejected and are recorded nowhere else; stopped"
            ) from error

    def _stream(self) -> IO[str]:
        if self._file is None:
            if isinstance(self._target, str | os.PathLike):
                self._file = open(self._target, "w", encoding="utf-8")  # noqa: SIM115
                self._owns = True
            else:
                self._file = self._target  # type: ignore[assignment]
        assert self._file is not None
        return self._file

    def close(self) -> None:
        if self._file is not None and self._owns:
            self._file.close()
        self._file = None


ProgressCallback = Callable[[Report], None]


def write_rejects(
    sink: str | os.PathLike[str] | IO[str] | list[Any] | None, report: SyncReport
) -> None:
    """Write a call's rejected and failed rows to ``sink`` (if any), in one go."""
    if sink is None or not (report.rejections or report.failures):
        return
    rejects = RejectsFile(sink)
    try:
        rejects.write(report.rejections + report.failures)
    finally:
        rejects.close()
