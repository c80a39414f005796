"""Caching: keep what was computed for a user (a vector or a score row) until their history changes."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from ..data.protocol import PAD


# ============================================================================ caching
def history_fingerprint(history: Sequence[int] | np.ndarray | torch.Tensor) -> str:
    """A short hash of a history's real items (padding ignored): equal histories, equal prints."""
    arr = history.detach().cpu().numpy() if isinstance(history, torch.Tensor) else np.asarray(history)
    arr = np.ascontiguousarray(arr[arr != PAD], dtype=np.int64)
    return hashlib.blake2b(arr.tobytes(), digest_size=12).hexdigest()


class LRUCache:
    """A least-recently-used cache with fingerprint checks, safe to share between threads.

    ``get(key, fingerprint=fp)`` returns the value only if it was stored with the same
    fingerprint; a different one means the entry is **stale** (the user's history changed
    since): it is dropped and counted in ``stale``. Beyond ``capacity`` entries the least
    recently used one is evicted.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data: OrderedDict[Hashable, tuple[str | None, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.stale = self.evictions = 0

    def get(self, key: Hashable, *, fingerprint: str | None = None) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            if entry[0] != fingerprint:
                del self._data[key]
                self.stale += 1
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: Any, *, fingerprint: str | None = None) -> None:
        with self._lock:
            self._data[key] = (fingerprint, value)
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
                self.evictions += 1

    def invalidate(self, key: Hashable) -> bool:
        """Drop ``key``; True if it was there."""
        with self._lock:
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def stats(self) -> dict[str, float]:
        total = self.hits + self.misses
        return {"size": len(self), "capacity": self.capacity, "hits": self.hits, "misses": self.misses,
                "stale": self.stale, "evictions": self.evictions, "hit rate": self.hits / total if total else 0.0}
