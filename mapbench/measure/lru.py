"""The ideal LRU cache, beside the kernel's (docs/method.md, "LRU under pressure"): the hits an
exact least-recently-used cache of the same capacity has on the same key stream, so that a
row's hit ratio can be read against the best an LRU policy of that size can do.

The kernel's LRU hash is an approximation of LRU (kernel/bpf/bpf_lru_list.c: active and
inactive lists with a reference bit, per-CPU free and pending lists), so its hits may differ;
on a working set that fits with room to spare it must have exactly these hits (each key misses
once, on first use), and under uniform draws any demand-paging policy hits about as often as
its effective capacity over the working set, so a shortfall is entries the map did not hold.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class IdealLru:
    """An exact LRU cache of `capacity` keys, fed the key stream a build's runs drew, in order."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"an LRU cache needs a capacity of at least 1, not {capacity}")
        self.capacity = capacity
        self.order: OrderedDict[int, None] = OrderedDict()  # least recently used first

    def access(self, keys: np.ndarray, insert: bool = True) -> int:
        """Look each key up in turn; a miss inserts it (evicting the least recently used one when
        full) unless `insert` is False (lookups alone). Returns the hits."""
        order, capacity, hits = self.order, self.capacity, 0
        for key in keys.tolist():
            if key in order:
                hits += 1
                order.move_to_end(key)
            elif insert:
                if len(order) >= capacity:
                    order.popitem(last=False)
                order[key] = None
        return hits

    def __len__(self) -> int:
        return len(self.order)
