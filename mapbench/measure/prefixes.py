"""The prefix family's tables in numpy (docs/method.md, "Prefixes"): a set of N distinct prefixes
with a prefix-length mix like a real routing table, the keys the loader fills an LPM trie or an
exact-match hash with, the addresses the programs look up (inside a present prefix for a hit,
outside every one for a miss), and the longest-prefix match that tests hold the kernel to.

An address is two uint64 words, `hi` and `lo`, read as one 128-bit big-endian number: an IPv4
address is the top 32 bits of `hi` (the rest zero), an IPv6 address all 128 bits. A prefix of
length L keeps the top L bits. Keys are laid out as the kernel's `struct bpf_lpm_trie_key_u8`:
a host-order u32 prefix length, then the address bytes in network order (4 or 16 of them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mapbench.errors import BadInput

_U64 = np.uint64
ADDR_FAMILIES = ("ipv4", "ipv6")
BITS = {"ipv4": 32, "ipv6": 128}
DATA_BYTES = {"ipv4": 4, "ipv6": 16}
TABLE = "table"  # --prefix-lens table: the family's mix below
HOSTS = "hosts"  # --prefix-lens hosts: an IP list, half host entries (/32, /128), half the table mix
HOST_SHARE = 0.5
KEY_RECORD = 20  # bytes of a draw-table record: struct mb_prefix_key of bpf/prefix.bpf.c

# Prefix-length mixes shaped like the public routing tables (share of the prefixes by length),
# rounded from the length distributions the CIDR Report (bgp.potaroo.net, 2024-25) publishes for
# the IPv4 table (about 1.0 M prefixes: /24 about 60 %, /22-/23 about 23 %, /19-/21 about 12 %)
# and the IPv6 table (about 0.2 M: /48 about half, /32 about 15 %, /44, /40, /36 and /29 next).
# Approximate on purpose: they set how deep the trie is and how prefixes nest, not a census.
MIXES = {
    "ipv4": {8: 0.0002, 12: 0.0008, 14: 0.001, 15: 0.001, 16: 0.013, 17: 0.006, 18: 0.01, 19: 0.025,
             20: 0.04, 21: 0.05, 22: 0.13, 23: 0.10, 24: 0.6228},
    "ipv6": {20: 0.001, 24: 0.003, 28: 0.008, 29: 0.05, 30: 0.008, 31: 0.005, 32: 0.15, 33: 0.012, 34: 0.01,
             35: 0.005, 36: 0.035, 40: 0.06, 44: 0.08, 46: 0.02, 47: 0.025, 48: 0.528},
}
# Lengths are never filled beyond this share of their 2^L prefixes, so that misses stay easy to
# draw; what a short length cannot hold goes to the mix's most common length.
MAX_SHARE_OF_LENGTH = 0.25


def parse_prefix_lens(text) -> str:
    """'table' (the address family's mix), 'hosts' (half full-length host entries, half the
    table mix) or one length n (every prefix /n)."""
    raw = str(text).strip().lower()
    if raw in (TABLE, HOSTS):
        return raw
    try:
        n = int(raw.lstrip("/"))
    except ValueError:
        raise BadInput(f"--prefix-lens {text!r} is not 'table', 'hosts' or a prefix length such as 24") from None
    if not 1 <= n <= 128:
        raise BadInput(f"--prefix-lens {n} is outside 1..128")
    return str(n)


def check(addr_family: str, prefix_lens: str, entries: int) -> None:
    """A one-line BadInput when the family has no such length or too few prefixes of it."""
    if prefix_lens in (TABLE, HOSTS):
        return
    n, bits = int(prefix_lens), BITS[addr_family]
    if n > bits:
        raise BadInput(f"--prefix-lens {n} is above the {bits} bits of an {addr_family} address")
    room = int(MAX_SHARE_OF_LENGTH * 2.0**n)
    if entries > room:
        raise BadInput(f"--size {entries} is above {room}, a quarter of the 2^{n} prefixes of length /{n}")


def lengths(addr_family: str, prefix_lens: str, entries: int) -> dict[int, int]:
    """How many prefixes of each length the set holds: the mix's shares of `entries`, each
    length capped at MAX_SHARE_OF_LENGTH of its 2^L prefixes, the rest on the most common one."""
    if prefix_lens == HOSTS:
        mix = {**{n: (1 - HOST_SHARE) * share for n, share in MIXES[addr_family].items()},
               BITS[addr_family]: HOST_SHARE}
    else:
        mix = MIXES[addr_family] if prefix_lens == TABLE else {int(prefix_lens): 1.0}
    counts = {n: min(int(round(share * entries)), int(MAX_SHARE_OF_LENGTH * 2.0**n)) for n, share in mix.items()}
    top = max(mix, key=mix.get)
    counts[top] += entries - sum(counts.values())
    return {n: c for n, c in sorted(counts.items()) if c > 0}


def _mask(n: int) -> tuple[int, int]:
    """(hi, lo) masks keeping the top n of 128 bits."""
    full = (1 << 128) - 1
    m = full ^ (full >> n)
    return m >> 64, m & ((1 << 64) - 1)


def _random_words(rng, count: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """count random addresses of an address family of `bits` bits, as (hi, lo)."""
    hi = rng.integers(0, 2**64, count, dtype=_U64, endpoint=False)
    lo = rng.integers(0, 2**64, count, dtype=_U64, endpoint=False)
    if bits == 32:
        return hi & _U64(0xFFFFFFFF00000000), np.zeros(count, dtype=_U64)
    return hi, lo


@dataclass(frozen=True)
class PrefixSet:
    """N distinct prefixes: prefix i is (hi[i], lo[i]) / length[i], and its value is i."""

    addr_family: str
    hi: np.ndarray
    lo: np.ndarray
    length: np.ndarray  # uint32

    def __len__(self) -> int:
        return len(self.hi)

    @property
    def bits(self) -> int:
        return BITS[self.addr_family]

    @functools.cached_property
    def _by_length(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per length: the prefixes sorted (their hi word up to /64, where lo is zero, which
        searches fast; else (hi, lo) records), and their indexes."""
        out = {}
        for n in np.unique(self.length):
            index = np.flatnonzero(self.length == n)
            keys = self.hi[index] if n <= 64 else _pairs(self.hi[index], self.lo[index])
            order = np.argsort(keys, kind="stable")
            out[int(n)] = (keys[order], index[order])
        return out

    def longest_match(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """For each address, the index of its longest matching prefix, or -1: what a lookup in
        an LPM trie of this set must return (its value)."""
        found = np.full(len(hi), -1, dtype=np.int64)
        for n in sorted(self._by_length, reverse=True):
            todo = found < 0
            if not todo.any():
                break
            mh, ml = _mask(n)
            query = hi[todo] & _U64(mh) if n <= 64 else _pairs(hi[todo] & _U64(mh), lo[todo] & _U64(ml))
            sorted_keys, index = self._by_length[n]
            at = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
            hit = sorted_keys[at] == query
            found[np.flatnonzero(todo)[hit]] = index[at[hit]]
        return found

    def keys(self, lengths: np.ndarray | None = None) -> np.ndarray:
        """The prefixes as LPM trie keys (prefix length, then the address bytes in network order):
        a (N, 4 + data bytes) uint8 array."""
        return _key_bytes(self.hi, self.lo, self.length if lengths is None else lengths, self.addr_family)

    def values(self) -> np.ndarray:
        return np.arange(len(self), dtype=_U64)


def _pairs(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.empty(len(hi), dtype=[("hi", _U64), ("lo", _U64)])
    out["hi"], out["lo"] = hi, lo
    return out


def _key_bytes(hi, lo, length, addr_family: str) -> np.ndarray:
    data = np.empty((len(hi), 16), dtype=np.uint8)
    data[:, :8] = hi.astype(">u8").view(np.uint8).reshape(-1, 8)
    data[:, 8:] = lo.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(hi), 4 + DATA_BYTES[addr_family]), dtype=np.uint8)
    out[:, :4] = np.asarray(length, dtype="<u4").view(np.uint8).reshape(-1, 4)
    out[:, 4:] = data[:, :DATA_BYTES[addr_family]]
    return np.ascontiguousarray(out)


@functools.lru_cache(maxsize=4)
def prefix_set(addr_family: str, prefix_lens: str, entries: int, seed: int) -> PrefixSet:
    """N distinct prefixes with the mix of `prefix_lens`, the same for the same arguments."""
    check(addr_family, prefix_lens, entries)
    rng = np.random.default_rng([seed, entries, BITS[addr_family]])
    his, los, lens = [], [], []
    for n, count in lengths(addr_family, prefix_lens, entries).items():
        mh, ml = _mask(n)
        have = np.empty(0, dtype=[("hi", _U64), ("lo", _U64)])
        while len(have) < count:  # distinct prefixes of this length, drawn until there are enough
            hi, lo = _random_words(rng, 2 * (count - len(have)) + 16, BITS[addr_family])
            have = np.unique(np.concatenate([have, _pairs(hi & _U64(mh), lo & _U64(ml))]))
        have = have[rng.permutation(len(have))[:count]]
        his.append(have["hi"])
        los.append(have["lo"])
        lens.append(np.full(count, n, dtype=np.uint32))
    order = rng.permutation(entries)  # value i is prefix i: the lengths mixed over the values
    return PrefixSet(addr_family, np.concatenate(his)[order], np.concatenate(los)[order],
                     np.concatenate(lens)[order])


def inside(s: PrefixSet, index: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """A random address inside each prefix s[index] (its host bits random)."""
    hi, lo = _random_words(rng, len(index), s.bits)
    keep_hi = np.empty(len(index), dtype=_U64)
    keep_lo = np.empty(len(index), dtype=_U64)
    for n in np.unique(s.length[index]):
        at = s.length[index] == n
        keep_hi[at], keep_lo[at] = _mask(int(n))
    return (s.hi[index] & keep_hi) | (hi & ~keep_hi), (s.lo[index] & keep_lo) | (lo & ~keep_lo)


def outside(s: PrefixSet, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """count random addresses that no prefix of s holds (drawn, those inside one dropped)."""
    his, los, have = [np.empty(0, dtype=_U64)], [np.empty(0, dtype=_U64)], 0
    while have < count:
        hi, lo = _random_words(rng, 2 * (count - have) + 16, s.bits)
        miss = s.longest_match(hi, lo) < 0
        his.append(hi[miss])
        los.append(lo[miss])
        have += int(miss.sum())
    return np.concatenate(his)[:count], np.concatenate(los)[:count]


def table_record(hi: np.ndarray, lo: np.ndarray, length: np.ndarray, addr_family: str) -> np.ndarray:
    """Draw-table records (struct mb_prefix_key: u32 prefix length, 16 address bytes in network
    order, unused ones zero): (n, KEY_RECORD) uint8."""
    out = np.zeros((len(hi), KEY_RECORD), dtype=np.uint8)
    key = _key_bytes(hi, lo, length, addr_family)
    out[:, :key.shape[1]] = key
    return out


@functools.lru_cache(maxsize=4)
def lookup_table(addr_family: str, prefix_lens: str, entries: int, seed: int, length: int,
                 hit_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`length` lookup addresses in a random order: round(hit_ratio * length) of them inside a
    random present prefix each, the rest outside every prefix. (hi, lo, records)."""
    s = prefix_set(addr_family, prefix_lens, entries, seed)
    rng = np.random.default_rng([seed, length, 1])
    hits = int(round(hit_ratio * length))
    hi_in, lo_in = inside(s, rng.integers(0, entries, hits), rng)
    hi_out, lo_out = outside(s, length - hits, rng)
    order = rng.permutation(length)
    hi, lo = np.concatenate([hi_in, hi_out])[order], np.concatenate([lo_in, lo_out])[order]
    full = np.full(length, s.bits, dtype=np.uint32)
    return hi, lo, table_record(hi, lo, full, addr_family)


def lookup_table_length(entries: int) -> int:
    """A power of two of lookup addresses: two per prefix, within 2^16 .. 2^20 (at most 20 MiB)."""
    return 1 << min(20, max(16, (2 * entries - 1).bit_length()))


@functools.lru_cache(maxsize=4)
def write_order(entries: int, seed: int) -> np.ndarray:
    """The order updates and deletes draw the prefixes in: draw i takes prefix write_order[i % entries]."""
    return np.random.default_rng([seed, entries, 2]).permutation(entries)
