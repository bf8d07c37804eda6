"""A user's own BPF program, as the own-program engine needs it: variants compiled from the user's
source, the control (an empty program of the same type on the same sections), packets and
context for test runs, maps sized and filled before the programs run, and the trees of git
revisions for `mapbench ab`. Every failure the user can fix is one BadInput line with the
useful part of the tool's own message (docs/own-programs.md, "Bad input")."""

from __future__ import annotations

import atexit
import functools
import io
import re
import shlex
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np

from mapbench.errors import BadInput, KernelRefused
from mapbench.measure import build, children
from mapbench.measure.values import parse_whole_number

VARIANT_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,40}")
FILL_CHUNK = 1 << 16
MAX_FILL = 2**32 - 1
PACKET_SUFFIXES = (".pcap", ".pcapng", ".cap")
LOG_TAIL_LINES = 3  # of a verifier log, in the one-line error (all of it with -v)


@dataclass(frozen=True)
class Variant:
    """One build of the user's program: a name, extra clang flags, and where it comes from (the
    run's --source, a source of its own (a git revision's tree), or a prebuilt object)."""

    name: str
    cflags: tuple[str, ...] = ()
    source: str | None = None  # None: the spec's source
    object: str | None = None  # a prebuilt .o: nothing to compile

    def __str__(self) -> str:
        return self.name


def parse_variant(text) -> Variant:
    """--variant NAME[=CFLAGS]: 'hash=-DSTORE=HASH -O2' -> Variant('hash', ('-DSTORE=HASH', '-O2'))."""
    if isinstance(text, Variant):
        return text
    name, _, flags = str(text).partition("=")
    name = name.strip()
    if not VARIANT_NAME.fullmatch(name):
        raise BadInput(f"--variant {text!r}: a variant's name is 1 to 40 of letters, digits and _.+- "
                       "(then =CFLAGS, optional)")
    try:
        return Variant(name, tuple(shlex.split(flags)))
    except ValueError as exc:
        raise BadInput(f"--variant {text!r}: its flags do not parse as a shell would: {exc}") from None


def check_variant_names(variants: list[Variant]) -> None:
    names = [v.name for v in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInput(f"--variant {twice[0]} is given twice: each variant needs a name of its own")


def existing_file(flag: str):
    def parse(text) -> str:
        path = Path(str(text)).expanduser()
        if not path.is_file():
            raise BadInput(f"{flag} {str(text)!r}: no such file")
        return str(path.resolve())
    return parse


def existing_dir(flag: str):
    def parse(text) -> tuple[str, ...]:
        out = []
        for item in ([text] if isinstance(text, str) else text):
            path = Path(str(item)).expanduser()
            if not path.is_dir():
                raise BadInput(f"{flag} {str(item)!r}: no such directory")
            out.append(str(path.resolve()))
        return tuple(out)
    return parse


def _pairs(flag: str, text) -> list[tuple[str, str]]:
    out = []
    for item in ([text] if isinstance(text, str) else text):
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BadInput(f"{flag} {str(item)!r} must be MAP=VALUE")
        out.append((name.strip(), value.strip()))
    names = [n for n, _ in out]
    for n in names:
        if names.count(n) > 1:
            raise BadInput(f"{flag} names map {n} twice")
    return out


def parse_map_sizes(text) -> tuple[tuple[str, int], ...]:
    """--map-size MAP=N (repeatable): max_entries set before load."""
    out = []
    for name, value in _pairs("--map-size", text):
        n = parse_whole_number(value, f"--map-size {name}=", " of entries")
        if not 1 <= n <= MAX_FILL:
            raise BadInput(f"--map-size {name}={value} is outside 1..{MAX_FILL} entries")
        out.append((name, n))
    return tuple(sorted(out))


def parse_fills(text) -> tuple[tuple[str, str], ...]:
    """--fill MAP=N (integer keys 0..N-1, or random ones) or MAP=FILE (raw key/value records)."""
    out = []
    for name, value in _pairs("--fill", text):
        try:
            n = parse_whole_number(value, "--fill")
        except BadInput:
            path = Path(value).expanduser()
            if not path.is_file():
                raise BadInput(f"--fill {name}={value}: neither a number of entries nor a file") from None
            out.append((name, str(path.resolve())))
            continue
        if not 1 <= n <= MAX_FILL:
            raise BadInput(f"--fill {name}={value} is outside 1..{MAX_FILL} entries")
        out.append((name, str(n)))
    return tuple(sorted(out))


# --- building -----------------------------------------------------------------------------------

_BUILD_DIR: tempfile.TemporaryDirectory | None = None


def _build_dir() -> Path:
    """Objects of this process's user builds: compiled once per variant, gone at exit."""
    global _BUILD_DIR
    if _BUILD_DIR is None:
        _BUILD_DIR = tempfile.TemporaryDirectory(prefix="mapbench-own-")
        atexit.register(_BUILD_DIR.cleanup)
    return Path(_BUILD_DIR.name)


FIRST_ERROR = re.compile(r"^(?P<where>[^\s:][^:]*:\d+):\d+: (?:fatal )?error: (?P<what>.*)$", re.M)


@functools.cache
def compile_source(source: str, cflags: tuple[str, ...], includes: tuple[str, ...], isa: str) -> build.BuiltObject:
    """clang -target bpf -g -O2 -mcpu=<isa>, vmlinux.h of the running kernel and the source's own
    directory on the include path, then the user's -I directories and flags. Not cached across
    processes: a user's headers are not ours to track."""
    src = Path(source)
    header = build.vmlinux_header()
    flags = ["-target", "bpf", "-g", "-O2", f"-mcpu={isa}", *cflags]
    out = _build_dir() / f"{src.name.removesuffix('.c')}-{len(list(_build_dir().iterdir()))}.o"
    cmd = [build.tool("clang"), *flags, f"-I{header.parent}", f"-I{src.parent}",
           *(f"-I{d}" for d in includes), "-c", str(src), "-o", str(out)]
    res = children.run(cmd)
    if res.returncode != 0:
        first = FIRST_ERROR.search(res.stderr)
        what = f"{first['where']}: {first['what']}" if first else (res.stderr.strip().splitlines() or ["?"])[-1]
        error = BadInput(f"{src.name} does not compile ({' '.join(cflags) or 'no extra flags'}): {what}")
        error.log = res.stderr
        raise error
    return build.BuiltObject(out, build._sha256(out.read_bytes()), isa, " ".join(cflags))


def verifier_refused(exc: KernelRefused, what: str) -> BadInput:
    """A load the kernel refused, as bad input: the last lines of the verifier's log (all of it
    with -v)."""
    log = exc.log
    if "-- BEGIN PROG LOAD LOG --" in log:  # libbpf frames the verifier's own words: keep those
        log = log.split("-- BEGIN PROG LOAD LOG --", 1)[1].split("-- END PROG LOAD LOG --", 1)[0]
    lines = [line.strip() for line in log.splitlines()
             if line.strip() and not line.startswith(("processed ", "verification time", "stack depth"))]
    tail = " | ".join(lines[-LOG_TAIL_LINES:]) if lines else str(exc)
    error = BadInput(f"{what}: the kernel refused it ({exc}): {tail}")
    error.log = exc.log
    return error


# Section prefixes libbpf maps to each program type; the control program reuses the section
# name itself, so any of them works. What an empty program returns: "pass" where it matters.
PASS_RETVAL = {"xdp": 2}  # XDP_PASS; 0 elsewhere (TC_ACT_OK, BPF_OK, a socket filter's 0 bytes)


def control_source(programs: list[tuple[str, str, str]]) -> str:
    """A source of empty programs, one per (name, section, type) of the variant: the same types
    on the same sections, so that its figure is what running any program there costs."""
    body = ['#include "vmlinux.h"', "#include <bpf/bpf_helpers.h>", 'char LICENSE[] SEC("license") = "GPL";']
    for name, section, type_name in programs:
        body.append(f'SEC("{section}") int {name}(void *ctx) {{ return {PASS_RETVAL.get(type_name, 0)}; }}')
    return "\n".join(body) + "\n"


@functools.cache
def compile_control(programs: tuple[tuple[str, str, str], ...], isa: str) -> build.BuiltObject:
    path = _build_dir() / f"control-{abs(hash(programs))}.bpf.c"
    path.write_text(control_source(list(programs)))
    return compile_source(str(path), (), (), isa)


# --- packets and context ------------------------------------------------------------------------

def default_frame() -> bytes:
    """A 60-byte Ethernet/IPv4/UDP frame (the least Ethernet carries, FCS aside)."""
    udp = dpkt.udp.UDP(sport=40000, dport=53, data=b"\0" * 18)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02", type=dpkt.ethernet.ETH_TYPE_IP,
                                 data=ip)
    return bytes(eth)


@functools.cache
def read_packets(path: str) -> tuple[bytes, ...]:
    """A pcap or pcapng file's packets (in rotation, in file order), or, for a file of another
    suffix, its raw bytes as the one packet."""
    data = Path(path).read_bytes()
    if not data:
        raise BadInput(f"--packet {path}: the file is empty")
    if not path.endswith(PACKET_SUFFIXES):
        return (data,)
    try:
        reader = (dpkt.pcapng.Reader if path.endswith(".pcapng") else dpkt.pcap.Reader)(io.BytesIO(data))
        packets = tuple(bytes(buf) for _, buf in reader)
    except (ValueError, dpkt.dpkt.Error) as exc:
        raise BadInput(f"--packet {path}: not a pcap file ({exc})") from None
    if not packets:
        raise BadInput(f"--packet {path}: the capture holds no packet")
    return packets


def write_pcap(path: Path, frames: list[bytes]) -> None:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=i * 1e-6)


# --- maps -----------------------------------------------------------------------------------------

# BPF_MAP_TYPE_* (include/uapi/linux/bpf.h) whose entries user space cannot put by key and value
UNFILLABLE = {4: "perf event array", 24: "socket storage", 27: "ring buffer", 28: "inode storage",
              29: "task storage (keyed by the tasks themselves)", 30: "bloom filter", 32: "cgroup storage"}
INT_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def integer_keys(n: int, key_size: int, random: bool, seed: int) -> np.ndarray:
    """n distinct keys of key_size bytes: 0..n-1, or drawn uniformly from the key space."""
    dtype = INT_DTYPES[key_size]
    if not random:
        return np.arange(n, dtype=dtype)
    rng = np.random.default_rng(seed)
    high = min(2**(8 * key_size), 2**63)
    if n > high:
        raise BadInput(f"--fill {n} entries is above the {high} keys of {key_size} bytes")
    keys = np.empty(0, dtype=np.uint64)
    while len(keys) < n:
        keys = np.unique(np.concatenate([keys, rng.integers(0, high, size=n - len(keys) + 16, dtype=np.uint64)]))
    return rng.permutation(keys)[:n].astype(dtype)


def fill_map(m, how: str, random_keys: bool, seed: int) -> int:
    """Fill a loaded map: how is a count (integer keys, from the map's BTF key type) or a file of
    raw key/value records (one CPU's value for a per-CPU map: every CPU gets it). Entries put."""
    if m.map_type in UNFILLABLE:
        raise BadInput(f"--fill {m.name}: map {m.name} is a {UNFILLABLE[m.map_type]}, whose entries are not "
                       "key/value records user space can put")
    copies = m.elem_value_bytes // m.value_size if m.percpu else 1
    width = (m.value_size + 7) // 8 * 8 if m.percpu else m.value_size
    if how.isdigit():
        n = int(how)
        kind = m.key_type()
        if kind is None or kind[0] not in ("int", "enum", "enum64") or m.key_size not in INT_DTYPES:
            what = f"{kind[0]} {kind[1]}".strip() if kind else "without a BTF type"
            raise BadInput(f"--fill {m.name}={n}: the key of map {m.name} is {what} ({m.key_size} bytes), not an "
                           f"integer: give --fill {m.name}=FILE of {m.key_size}+{m.value_size}-byte key/value records")
        keys = integer_keys(n, m.key_size, random_keys, seed)
        values = np.zeros((n, copies * width), dtype=np.uint8)
    else:
        data = Path(how).read_bytes()
        record = m.key_size + m.value_size
        if not data or len(data) % record:
            raise BadInput(f"--fill {m.name}={how}: {len(data)} bytes are not whole records of {m.key_size}-byte "
                           f"key + {m.value_size}-byte value ({record} bytes) for map {m.name}")
        records = np.frombuffer(data, np.uint8).reshape(-1, record)
        n = len(records)
        keys = np.ascontiguousarray(records[:, :m.key_size])
        one = np.zeros((n, width), np.uint8)
        one[:, :m.value_size] = records[:, m.key_size:]
        values = np.ascontiguousarray(np.tile(one, (1, copies)))
    if n > m.max_entries:
        raise BadInput(f"--fill {m.name}: {n} entries are above the map's max_entries {m.max_entries} "
                       f"(raise it with --map-size {m.name}={n})")
    try:
        m.update_batch(keys, values, FILL_CHUNK)
    except KernelRefused as exc:  # types without batch updates (EINVAL, ENOTSUPP): one at a time
        if exc.errno not in (22, 95, 524):
            raise
        for k, v in zip(keys, values):
            m.update(k.tobytes(), v.tobytes())
    return n


# --- git revisions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Revision:
    name: str  # as given
    commit: str
    source: str  # the source file in that revision's tree (a temporary directory)


def revision_tree(source: str, rev: str, into: Path) -> Revision:
    """The tree of git revision `rev` of the repository holding `source`, extracted into `into`
    (headers and all); the source's path in it."""
    src = Path(source).resolve()
    top = children.run(["git", "-C", str(src.parent), "rev-parse", "--show-toplevel"])
    if top.returncode != 0:
        raise BadInput(f"{rev}: {src} is not in a git repository ({top.stderr.strip()})")
    root = Path(top.stdout.strip())
    commit = children.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"])
    if commit.returncode != 0:
        raise BadInput(f"{rev!r} is not a revision git knows in {root}")
    sha = commit.stdout.strip()
    tar = children.run(["git", "-C", str(root), "archive", "--format=tar", sha], text=False)
    if tar.returncode != 0:
        raise BadInput(f"git archive {rev}: {tar.stderr.decode(errors='replace').strip()}")
    tarfile.open(fileobj=io.BytesIO(tar.stdout)).extractall(into, filter="data")
    inside = into / src.relative_to(root)
    if not inside.is_file():
        raise BadInput(f"{rev} ({sha[:12]}) has no {src.relative_to(root)}")
    return Revision(rev, sha, str(inside))


def side(given: str, source: str | None, name: str, into: Path) -> tuple[Variant, str]:
    """A side of `mapbench ab`: a prebuilt object file, or a git revision of the source's
    repository. The variant and how the report names it."""
    path = Path(given)
    if path.suffix == ".o" and path.is_file():
        return Variant(name, object=str(path.resolve())), f"{given} (object)"
    if source is None:
        raise BadInput(f"{given!r} is not an object file: give --source FILE.bpf.c to build git revisions")
    into.mkdir(parents=True, exist_ok=True)
    rev = revision_tree(source, given, into)
    return Variant(name, source=rev.source), f"{given} ({rev.commit[:12]})"
