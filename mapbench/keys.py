"""The key stream of bpf/mapbench.h in numpy: user space fills maps with exactly the keys the
programs will draw, and tests predict every hit."""

from __future__ import annotations

import numpy as np

from ._libbpf import lib

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


def bloom_elements(member_keys: np.ndarray, words: int) -> np.ndarray:
    """mb_bloom_word() of bpf/mapbench.h: (n, words) u32 elements, word 0 the key itself."""
    w = np.arange(words, dtype=np.uint32)
    derived = member_keys[:, None] ^ (w[None, :] * np.uint32(0x9E3779B9))
    derived[:, 0] = member_keys
    return np.ascontiguousarray(derived)
