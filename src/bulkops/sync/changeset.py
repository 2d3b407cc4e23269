"""The changeset file: a difference between a source and a table kept as gzip JSON
Lines (header, one record per added / changed row and per deleted key, trailer with
the counts and a SHA-256), its reader with whole-file validation, and its writer."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from ..errors import ChangesetError
from ..jsoncodec import dumps, dumps_size
from ..report import SyncReport

__all__ = [
    "CHANGESET_FORMAT",
    "CHANGESET_VERSION",
    "Changeset",
    "ChangesetWriter",
    "difference_size",
    "lines_size",
    "open_lines",
    "rows_lines_size",
    "validate",
]

CHANGESET_FORMAT = "bulkops-changeset"
CHANGESET_VERSION = 1


class Changeset:
    """A difference between a source and a table, kept as a gzip-compressed JSON Lines
    file: a header (table, key, columns, their types, where), one line per added or
    changed row (in full) and per deleted key, and a trailer with the counts and a
    SHA-256 of the lines, so that a truncated or corrupt file is refused whole.

    ``db.diff(...)`` makes one (in a temporary file until ``write(path)``);
    ``Changeset.read(path)`` opens a stored one; ``db.apply(changeset)`` applies it.
    ``bytes``: the compressed size; ``full_bytes``: the whole source as uncompressed
    JSON Lines, when the changeset was computed here (None when read from a file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Mapping[str, Any],
        trailer: Mapping[str, Any],
        *,
        temporary: bool = False,
        full_bytes: int | None = None,
        report: SyncReport | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.header = dict(header)
        self.trailer = dict(trailer)
        self.full_bytes = full_bytes
        self.report = report
        self._temporary = temporary

    table = property(lambda self: self.header["table"])
    key = property(lambda self: tuple(self.header["key"]))
    columns = property(lambda self: tuple(self.header["columns"]))
    where = property(lambda self: self.header["where"])
    added = property(lambda self: self.trailer["added"])
    changed = property(lambda self: self.trailer["changed"])
    deleted = property(lambda self: self.trailer["deleted"])

    @property
    def bytes(self) -> int:
        return os.path.getsize(self.path)

    @property
    def ratio(self) -> float | None:
        """The changeset's size against the full data's (None if unknown)."""
        return self.bytes / self.full_bytes if self.full_bytes else None

    def __repr__(self) -> str:
        return (
            f"Changeset({self.table!r}: added {self.added}, changed {self.changed}, "
            f"deleted {self.deleted}; {self.bytes} bytes)"
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Store the changeset at ``path`` (written to a temporary name, then renamed)."""
        target = os.fspath(path)
        if os.path.abspath(target) == os.path.abspath(self.path):
            return
        partial = f"{target}.partial"
        shutil.copyfile(self.path, partial)
        os.replace(partial, target)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Changeset:
        """Open a stored changeset, checking all of it first (ChangesetError if it is
        truncated, corrupt or not a bulkops changeset)."""
        header, trailer = validate(os.fspath(path))
        return cls(path, header, trailer)

    def records(self) -> Iterator[dict[str, Any]]:
        """The added / changed / deleted records, in file order (checked as they come)."""
        with open_lines(self.path) as lines:
            next(lines)
            for line in lines:
                record = json.loads(line)
                if "end" in record:
                    return
                yield record

    def close(self) -> None:
        """Remove the temporary file of a changeset that was not stored elsewhere."""
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._temporary = False

    def __enter__(self) -> Changeset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


@contextlib.contextmanager
def open_lines(path: str) -> Iterator[Iterator[str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield iter(f)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise ChangesetError(f"changeset {path}: not a readable gzip file ({error})") from error


def validate(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the whole file: header, records, trailer; the counts and SHA-256 agree."""
    counts = {"add": 0, "change": 0, "delete": 0}
    digest = hashlib.sha256()
    trailer: dict[str, Any] | None = None
    with open_lines(path) as lines:
        try:
            header = json.loads(next(lines))
        except StopIteration:
            raise ChangesetError(f"changeset {path} is empty") from None
        except json.JSONDecodeError as error:
            raise ChangesetError(f"changeset {path}: the header is not JSON ({error})") from None
        if not isinstance(header, dict) or header.get("format") != CHANGESET_FORMAT:
            raise ChangesetError(f"{path} is not a bulkops changeset")
        if header.get("version") != CHANGESET_VERSION:
            raise ChangesetError(
                f"changeset {path} has version {header.get('version')!r}; this bulkops "
                f"reads version {CHANGESET_VERSION}"
            )
        for number, line in enumerate(lines, start=2):
            if trailer is not None:
                raise ChangesetError(f"changeset {path}: line {number} follows the trailer")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ChangesetError(
                    f"changeset {path}: line {number} is corrupt ({error})"
                ) from None
            if not isinstance(record, dict):
                raise ChangesetError(f"changeset {path}: line {number} is not an object")
            if "end" in record:
                trailer = record
                continue
            op = record.get("op")
            if op not in counts:
                raise ChangesetError(f"changeset {path}: line {number} has no valid op")
            counts[op] += 1
            digest.update(line.encode("utf-8", "surrogatepass"))
    if trailer is None:
        raise ChangesetError(
            f"changeset {path} is truncated: it ends without its trailer "
            f"({sum(counts.values())} records read); nothing was applied"
        )
    expected = {"add": trailer.get("added"), "change": trailer.get("changed"),
                "delete": trailer.get("deleted")}  # fmt: skip
    if expected != counts or trailer.get("sha256") != digest.hexdigest():
        raise ChangesetError(
            f"changeset {path} is corrupt: its records do not match its trailer "
            f"(counted {counts}, trailer says {expected}); nothing was applied"
        )
    return header, trailer


class ChangesetWriter:
    """Writes a changeset's lines as the difference is found."""

    def __init__(self, header: dict[str, Any]) -> None:
        fd, self.path = tempfile.mkstemp(prefix="bulkops-changes-", suffix=".jsonl.gz")
        os.close(fd)
        # Closed by finish() or discard(): it lives across the whole diff.
        self._file: IO[str] = gzip.open(  # noqa: SIM115
            self.path, "wt", encoding="utf-8", compresslevel=6
        )
        self.header = {"format": CHANGESET_FORMAT, "version": CHANGESET_VERSION, **header}
        self._file.write(json.dumps(self.header) + "\n")
        self._digest = hashlib.sha256()
        self.counts = {"add": 0, "change": 0, "delete": 0}

    def add(self, op: str, payload: Any) -> int:
        """A record of the difference (``payload``: a row, or a deleted key's values);
        the bytes it took."""
        field = "key" if op == "delete" else "row"
        line = dumps({"op": op, field: payload}) + "\n"
        self._file.write(line)
        data = line.encode("utf-8", "surrogatepass")
        self._digest.update(data)
        self.counts[op] += 1
        return len(data)

    def finish(self, full_bytes: int | None, report: SyncReport) -> Changeset:
        trailer = {
            "end": True, "added": self.counts["add"], "changed": self.counts["change"],
            "deleted": self.counts["delete"], "sha256": self._digest.hexdigest(),
        }  # fmt: skip
        self._file.write(json.dumps(trailer) + "\n")
        self._file.close()
        return Changeset(
            self.path, self.header, trailer, temporary=True, full_bytes=full_bytes, report=report
        )

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def rows_lines_size(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """``lines_size`` of ``{"op": "add", "row": {column: value}}`` records for ``rows``
    (tuples of ``columns``' values), at the cost of encoding the values once as lists:
    every record adds the same text for the op and the column names."""
    if not rows:
        return 0
    text = dumps(rows)
    values = len(text.encode("utf-8", "surrogatepass")) - 2 - 2 * (len(rows) - 1)
    names = sum(len(json.dumps(c, ensure_ascii=False).encode()) + 2 for c in columns)
    wrapper = len('{"op": "add", "row": {}}') - 2 + names + 1  # "[...]" becomes this, + "\n"
    return values + wrapper * len(rows)


def lines_size(records: list[Any]) -> int:
    """The bytes ``records`` take as JSON Lines (as a changeset writes them), from one
    ``json.dumps`` of the whole list (its C encoder) instead of one call per record."""
    if not records:
        return 0
    text = dumps(records)
    # "[a, b]" -> "a\nb\n": the brackets go, each ", " between records becomes "\n".
    size = len(text.encode("utf-8", "surrogatepass"))
    return size - 2 - 2 * (len(records) - 1) + len(records)


def difference_size(found: Iterable[tuple[str, Any]]) -> int:
    """``lines_size`` of the records ``{"op": op, "row" or "key": payload}`` for
    ``found`` (``(op, payload)``), counted a column at a time (``dumps_size``) instead
    of encoding every row: payloads that are dicts with the same columns, or lists of
    the same length, are sized together; any other payload is encoded as it is."""
    groups: dict[Any, list[Any]] = {}
    others: list[Any] = []
    total = 0
    ops: dict[str, int] = {}
    for op, payload in found:
        ops[op] = ops.get(op, 0) + 1
        if payload.__class__ is dict:
            groups.setdefault(tuple(payload), []).append(payload)
        elif payload.__class__ is list:
            groups.setdefault(len(payload), []).append(payload)
        else:
            others.append(payload)
    for op, count in ops.items():
        # The record around its payload: '{"op": "add", "row": ' ... '}' and "\n".
        field = "key" if op == "delete" else "row"
        wrapper = dumps({"op": op, field: None}).encode("utf-8", "surrogatepass")
        total += (len(wrapper) - 4 + 1) * count  # 4: "null"
    total += dumps_size(others)
    for shape, payloads in groups.items():
        if not isinstance(shape, int) and not all(name.__class__ is str for name in shape):
            total += dumps_size(payloads)  # keys json writes its own way (1 -> "1")
            continue
        if isinstance(shape, int):  # lists: "[a, b]"
            total += (2 + 2 * max(shape - 1, 0)) * len(payloads)
            columns: list[Any] = list(zip(*payloads, strict=True)) if shape else []
        else:  # dicts: '{"k": a, "l": b}'
            names = sum(len(dumps(name).encode("utf-8", "surrogatepass")) + 2 for name in shape)
            total += (2 + names + 2 * max(len(shape) - 1, 0)) * len(payloads)
            columns = [[p[name] for p in payloads] for name in shape]
        total += sum(dumps_size(list(column)) for column in columns)
    return total
