"""Sync's per-row state: for each key of a synced scope, the key's encoding, its
hash and the digest of the row as last synced (``hashing``), kept sorted by key hash
in numpy / Arrow arrays so that a source batch is looked up, the keys it lacks are
found and the next state is made without Python per row.

It travels to and from the database as Arrow IPC bytes (the backend's ``SyncState``
stores them, split into parts): reading a million keys' digests is reading ~25 MB of
blobs, not a million rows through a driver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .hashing import ENCODING_VERSION, HashedRows

__all__ = ["RowDigests", "digests_available"]


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

    def lookup(self, key_hashes: Any) -> tuple[Any, Any]:
        """For each key hash: its index here, and whether it is here."""
        import numpy as np

        index = np.searchsorted(self.key_hashes, key_hashes)
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

    # ----------------------------------------------------------- storage

    def to_bytes(self, columns: Sequence[str]) -> bytes:
        """Arrow IPC bytes, marked with the encoding's version and the columns."""
        import pyarrow as pa

        batch = pa.record_batch(
            [self.keys, pa.array(self.key_hashes), pa.array(self.digests)],
            names=["key", "key_hash", "digest"],
        )
        meta = {"bulkops_digests": json.dumps([ENCODING_VERSION, list(columns)])}
        batch = batch.replace_schema_metadata(meta)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return bytes(sink.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes, columns: Sequence[str]) -> RowDigests | None:
        """The state stored by ``to_bytes``; None if it was made by another version of
        the encoding or for other columns (then it is rebuilt)."""
        import numpy as np
        import pyarrow as pa

        try:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        except pa.ArrowInvalid:
            return None
        meta = table.schema.metadata or {}
        if json.loads(meta.get(b"bulkops_digests", b"null")) != [ENCODING_VERSION, list(columns)]:
            return None
        keys = table.column("key").combine_chunks()
        hashes = table.column("key_hash").to_numpy().astype(np.uint64, copy=False)
        digests = table.column("digest").to_numpy().astype(np.uint64, copy=False)
        return cls(keys, hashes, digests)
