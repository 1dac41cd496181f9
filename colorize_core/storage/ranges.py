"""A seekable file over an object's ranged reads (Parquet footers and row groups without the
whole object)."""

from __future__ import annotations

import io
from typing import Any

from colorize_core.storage.objects import ObjectStore


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object's ranged reads: a Parquet reader fetches the
    footer and the row groups it needs, not the whole object (each read is one ranged GET)."""

    def __init__(self, store: ObjectStore, key: str, size: int | None = None) -> None:
        self._store, self._key = store, key
        self._size = store.size(key) if size is None else size  # known from a listing: no HEAD
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._store.read_range(self._key, self._pos, want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
