"""The key stream of bpf/mapbench.h in numpy: user space fills maps with exactly the keys the
programs will draw, and tests predict every hit."""

from __future__ import annotations

import numpy as np

from mapbench.binding._libbpf import lib

HIT_SCALE = lib.MB_HIT_SCALE

_U64 = np.uint64


def mix(x: np.ndarray) -> np.ndarray:
    """mb_mix() of bpf/mapbench.h (splitmix64's finaliser), on uint64 arrays (wrapping)."""
    x = x.astype(_U64) + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def draws(seed: int, start: int, count: int) -> np.ndarray:
    return mix(_U64(seed) + _U64(start) + np.arange(count, dtype=_U64))


def member_keys(indexes: np.ndarray, key_mult: int, key_salt: int) -> np.ndarray:
    """key(i) = i * key_mult ^ key_salt on u32: a bijection, since key_mult is odd."""
    return (indexes.astype(np.uint32) * np.uint32(key_mult)) ^ np.uint32(key_salt)


def expected_hits(seed: int, start: int, count: int, hit_thresh: int) -> int:
    """How many of the draws start..start+count-1 the membership programs must find."""
    r = draws(seed, start, count)
    return int(np.count_nonzero((r & _U64(HIT_SCALE - 1)) < _U64(hit_thresh)))


def key_words(member_keys: np.ndarray, words: int) -> np.ndarray:
    """mb_key_word() of bpf/mapbench.h: (n, words) u32 keys (or bloom elements), word 0 the key
    itself."""
    w = np.arange(words, dtype=np.uint32)
    derived = member_keys[:, None] ^ (w[None, :] * np.uint32(0x9E3779B9))
    derived[:, 0] = member_keys
    return np.ascontiguousarray(derived)


def value_words(member_keys: np.ndarray, words: int, gen: int = 0) -> np.ndarray:
    """mb_value_word() of bpf/mapbench.h: (n, words) u64 values; gen 0 as user space fills a
    map, gen 1 as the programs write."""
    w = np.arange(words, dtype=_U64)
    return np.ascontiguousarray((member_keys.astype(_U64)[:, None] << _U64(32)) | (w[None, :] << _U64(1))
                                | _U64(gen))


MAX_ZIPF_ENTRIES = 1 << 26  # the inverse CDF is a float64 per entry: 512 MiB at this bound


def zipf_table(entries: int, s: float, length: int, seed: int) -> np.ndarray:
    """`length` draws of entry indexes 0..entries-1 with P(rank k) proportional to 1/k^s (a finite
    Zipf law, so any s >= 0 works), the ranks scattered over the entries by a random
    permutation so that the hot entries are not neighbours. Deterministic from the seed."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.arange(1, entries + 1, dtype=np.float64) ** -s)
    ranks = np.searchsorted(cdf, rng.random(length) * cdf[-1], side="right")
    ranks = np.minimum(ranks, entries - 1)  # u * total rounding up to the last bin edge
    return rng.permutation(entries).astype(np.uint32)[ranks]


def draw_indexes(config: dict, start: int, count: int, table: np.ndarray | None = None, first: int = 0,
                 nr: int = 0):
    """draw_index() of bpf/membership.bpf.c for draws start..start+count-1, on entries
    first..first+nr-1 (nr 0: all): (entry indexes, hit mask). A miss's index is past map_size."""
    n = config["map_size"]
    i = _U64(start) + np.arange(count, dtype=_U64)
    r = mix(_U64(config["seed"]) + i)
    if config.get("sequential"):
        idx = i % _U64(n)
    elif table is not None:
        idx = table[(i & _U64(len(table) - 1)).astype(np.int64)].astype(_U64)
    else:
        idx = (r >> _U64(32)) % _U64(n)
    if nr:
        idx = _U64(first) + idx % _U64(nr)
    if config.get("sequential"):
        return idx, np.ones(count, dtype=bool)
    hit = (r & _U64(HIT_SCALE - 1)) < _U64(config["hit_thresh"])
    return np.where(hit, idx, idx + _U64(n)), hit
