"""Sync's per-row state: for each key of a synced scope, the key's encoding, its
hash and the digest of the row as last synced (``hashing``), kept sorted by key hash
in numpy / Arrow arrays so that a source batch is looked up, the keys it lacks are
found and the next state is made without Python per row.

It travels to and from the database as Arrow IPC parts (the backend's ``SyncState``
stores them): reading a million keys' digests is reading ~30 MB of blobs, not a
million rows through a driver; a sync appends only what it changed (a delta).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .hashing import ENCODING_VERSION, HashedRows

__all__ = ["Delta", "RowDigests", "Stored", "digests_available"]


def digests_available() -> bool:
    """Whether the per-row state can be used (it needs pyarrow and numpy)."""
    try:
        import numpy  # noqa: F401
        import pyarrow  # noqa: F401
        import xxhash  # noqa: F401
    except ImportError:
        return False
    return True


class RowDigests:
    """The digests of a scope's rows, sorted by key hash."""

    def __init__(self, keys: Any, key_hashes: Any, digests: Any) -> None:
        self.keys = keys  # Arrow binary array: each key's encoding
        self.key_hashes = key_hashes  # numpy uint64, ascending
        self.digests = digests  # numpy uint64

    def __len__(self) -> int:
        return len(self.key_hashes)

    @classmethod
    def build(cls, parts: Sequence[HashedRows]) -> RowDigests:
        """The state of these rows (no two with the same key)."""
        import numpy as np
        import pyarrow as pa

        if not parts:
            return cls(pa.array([], pa.binary()), np.empty(0, np.uint64), np.empty(0, np.uint64))
        keys = pa.concat_arrays([p.keys for p in parts])
        hashes = np.concatenate([p.key_hashes for p in parts])
        digests = np.concatenate([p.digests for p in parts])
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        # A key given again by a later part: the later entry wins.
        last = np.append(ordered[1:] != ordered[:-1], True) if len(ordered) else ordered
        order = order[last.astype(bool)] if len(ordered) else order
        return cls(keys.take(pa.array(order)), hashes[order], digests[order])

    def lookup(self, key_hashes: Any, order: Any = None) -> tuple[Any, Any]:
        """For each key hash: its index here, and whether it is here. ``order``: the
        ``argsort`` of ``key_hashes``, if known."""
        import numpy as np

        # Looked up in ascending order: the searches then walk the state in order (3x
        # faster than in the source's order on a million keys).
        if order is None:
            order = np.argsort(key_hashes)
        index = np.empty(len(key_hashes), dtype=np.int64)
        index[order] = np.searchsorted(self.key_hashes, key_hashes[order])
        if not len(self.key_hashes):
            return index, np.zeros(len(key_hashes), dtype=bool)
        clipped = np.minimum(index, len(self.key_hashes) - 1)
        return clipped, self.key_hashes[clipped] == key_hashes

    def without(self, dropped: Any) -> HashedRows:
        """The entries whose mask in ``dropped`` is False, as hashed rows."""
        import numpy as np
        import pyarrow as pa

        kept = np.nonzero(~dropped)[0]
        return HashedRows(self.keys.take(pa.array(kept)), self.key_hashes[kept], self.digests[kept])

    def updated(self, delta: Delta) -> RowDigests:
        """This state with a delta applied (its entries win; its gone keys leave), in
        time linear in the state (the delta is merged in, not the whole re-sorted)."""
        import numpy as np
        import pyarrow as pa

        if not len(delta.key_hashes):
            return self
        # The delta's last entry for each key, sorted by key hash.
        order = np.argsort(delta.key_hashes, kind="stable")
        hashes = delta.key_hashes[order]
        last = np.append(hashes[1:] != hashes[:-1], True)
        order, hashes = order[last], hashes[last]
        n = len(self.key_hashes)
        at = np.searchsorted(self.key_hashes, hashes)
        hit = at < n
        hit[hit] = self.key_hashes[at[hit]] == hashes[hit]
        kept = np.ones(n, dtype=bool)
        kept[at[hit]] = False
        base = np.nonzero(kept)[0]
        adds = order[~delta.gone[order]]
        added_hashes = delta.key_hashes[adds]
        where = np.searchsorted(self.key_hashes[base], added_hashes)
        index = np.insert(base, where, n + adds)
        keys = pa.concat_arrays([self.keys, delta.keys]).take(pa.array(index))
        both_hashes = np.concatenate([self.key_hashes, delta.key_hashes])
        both_digests = np.concatenate([self.digests, delta.digests])
        return RowDigests(keys, both_hashes[index], both_digests[index])

    # ----------------------------------------------------------- storage
    #
    # Stored as parts, each an Arrow IPC stream marked with the encoding's version, the
    # columns and its kind: "base" parts (slices of the state, in key hash order) and
    # then "delta" parts (what a sync changed: entries, and keys gone). A sync appends
    # one delta, so its cost follows the difference, not the table; when the deltas
    # grow to a fair share of the state, it writes a new base instead.

    PART_ROWS = 200_000  # a base part's entries (about 6 MB for an integer key)

    def to_parts(self, columns: Sequence[str]) -> list[bytes]:
        """The state as base parts."""
        import pyarrow as pa

        n = len(self)
        parts = []
        for at in range(0, max(n, 1), self.PART_ROWS):
            end = min(at + self.PART_ROWS, n)
            arrays = [
                self.keys[at:end], pa.array(self.key_hashes[at:end]), pa.array(self.digests[at:end])
            ]  # fmt: skip
            parts.append(_ipc(arrays, ["key", "key_hash", "digest"], "base", columns))
        return parts

    @classmethod
    def from_parts(cls, parts: Sequence[bytes], columns: Sequence[str]) -> Stored | None:
        """The state stored by ``to_parts`` (and deltas); None if it was made by another
        version of the encoding or for other columns (then it is rebuilt)."""
        import numpy as np
        import pyarrow as pa

        bases: list[Any] = []
        deltas: list[Delta] = []
        for data in parts:
            try:
                table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
            except (pa.ArrowInvalid, OSError):
                return None
            meta = table.schema.metadata or {}
            try:
                version, cols, kind = json.loads(meta.get(b"bulkops_digests", b"null"))
            except (TypeError, ValueError):
                return None
            if version != ENCODING_VERSION or cols != list(columns):
                return None
            if kind == "base" and not deltas:
                bases.append(table)
            elif kind == "delta":
                deltas.append(
                    Delta(
                        table.column("key").combine_chunks(),
                        table.column("key_hash").to_numpy().astype(np.uint64, copy=False),
                        table.column("digest").to_numpy().astype(np.uint64, copy=False),
                        np.asarray(table.column("gone").to_numpy(zero_copy_only=False), dtype=bool),
                    )
                )
            else:
                return None
        if not bases:
            return None
        whole = pa.concat_tables(bases)
        state = cls(
            whole.column("key").combine_chunks(),
            whole.column("key_hash").to_numpy().astype(np.uint64, copy=False),
            whole.column("digest").to_numpy().astype(np.uint64, copy=False),
        )
        entries = 0
        for delta in deltas:
            state = state.updated(delta)
            entries += len(delta.key_hashes)
        return Stored(state, len(parts), entries)


@dataclass(frozen=True)
class Delta:
    """What a sync changed in a scope's per-row digests: entries (the later wins) and
    keys gone (``gone`` True: the entry's digest means nothing)."""

    keys: Any  # Arrow binary array
    key_hashes: Any  # numpy uint64
    digests: Any  # numpy uint64
    gone: Any  # numpy bool

    @classmethod
    def of(cls, entries: Sequence[HashedRows], gone: HashedRows | None = None) -> Delta:
        import numpy as np
        import pyarrow as pa

        parts = [*entries, *([] if gone is None else [gone])]
        if not parts:
            empty = np.empty(0, np.uint64)
            return cls(pa.array([], pa.binary()), empty, empty, np.empty(0, bool))
        flags = [np.zeros(len(p.key_hashes), bool) for p in entries]
        if gone is not None:
            flags.append(np.ones(len(gone.key_hashes), bool))
        return cls(
            pa.concat_arrays([p.keys for p in parts]),
            np.concatenate([p.key_hashes for p in parts]).astype(np.uint64, copy=False),
            np.concatenate([p.digests for p in parts]).astype(np.uint64, copy=False),
            np.concatenate(flags),
        )

    def __len__(self) -> int:
        return len(self.key_hashes)

    def to_bytes(self, columns: Sequence[str]) -> bytes:
        import pyarrow as pa

        return _ipc(
            [self.keys, pa.array(self.key_hashes), pa.array(self.digests), pa.array(self.gone)],
            ["key", "key_hash", "digest", "gone"], "delta", columns,
        )  # fmt: skip


@dataclass(frozen=True)
class Stored:
    """A scope's per-row digests as read back: the state, the parts it was read from
    and how many delta entries they held."""

    state: RowDigests
    parts: int
    delta_entries: int


def _ipc(arrays: list[Any], names: list[str], kind: str, columns: Sequence[str]) -> bytes:
    import pyarrow as pa

    batch = pa.record_batch(arrays, names=names)
    meta = {"bulkops_digests": json.dumps([ENCODING_VERSION, list(columns), kind])}
    batch = batch.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())
