"""The own-program engine: a user's own source, its variants head to head (docs/own-programs.md)."""

import collections
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.measure import runner, usersource
from mapbench.measure.engine import MeasureOptions
from mapbench.measure.engines.own import ProgramBuild, ProgramSpec
from mapbench.measure.usersource import Variant, parse_fills, parse_map_sizes, parse_variant
from mapbench.present import ab

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
XDP = ROOT / "examples" / "xdp_count" / "xdp_count.bpf.c"
TRAFFIC = ROOT / "examples" / "xdp_count" / "traffic.pcap"
SCHEDLAT = ROOT / "examples" / "schedlat" / "schedlat.bpf.c"
QUICK = MeasureOptions(samples=2, instances=2, warmup=1, target_ms=2)


def gone(kind: str, name: str, seconds: float = 10.0) -> bool:
    """No BPF program (or map) of that name is loaded, within seconds: the kernel frees one
    shortly (RCU) after its last fd and link close."""
    deadline = time.monotonic() + seconds
    while name in subprocess.run(["bpftool", kind, "show"], capture_output=True, text=True).stdout:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def spec(**fields) -> ProgramSpec:
    return ProgramSpec(**{"source": str(XDP), **fields})


def test_variant_and_map_flags_parse():
    assert parse_variant("lru=-DCOUNTER_MAP=BPF_MAP_TYPE_LRU_HASH -O2") == Variant(
        "lru", ("-DCOUNTER_MAP=BPF_MAP_TYPE_LRU_HASH", "-O2"))
    assert parse_variant("plain") == Variant("plain")
    assert parse_map_sizes(("b=10", "a=1e3")) == (("a", 1000), ("b", 10))
    with pytest.raises(BadInput, match="name is 1 to 40"):
        parse_variant("=-DX")
    with pytest.raises(BadInput, match="MAP=VALUE"):
        parse_fills(("counts",))
    with pytest.raises(BadInput, match="names map a twice"):
        parse_map_sizes(("a=1", "a=2"))


def test_every_packet_of_the_capture_runs_in_rotation():
    """One pass over the capture counts each source as often as numpy does."""
    packets = usersource.read_packets(str(TRAFFIC))
    expected = collections.Counter(int.from_bytes(p[26:30], "little") for p in packets)
    with ProgramBuild(spec(packet=str(TRAFFIC)), control=False, load=0) as b:
        sample = b.runner.calls(0, len(packets), 1, b.stats)
        assert sample.runs == len(packets)
        counts = b.obj.map("counts")
        got = {src: int.from_bytes(counts.lookup(src.to_bytes(4, "little")), "little") for src in expected}
    assert got == dict(expected)


def test_fill_puts_integer_keys_and_a_file_of_records(tmp_path):
    with ProgramBuild(spec(fills=(("counts", "1000"),)), control=False, load=0) as b:
        counts = b.obj.map("counts")
        assert counts.lookup((999).to_bytes(4, "little")) == bytes(8)
        assert counts.lookup((1000).to_bytes(4, "little")) is None
        assert b.entries == {"counts": 1000}
    keys = usersource.integer_keys(5000, 4, random=True, seed=3)
    assert len(np.unique(keys)) == 5000 and keys.max() > 5000
    records = tmp_path / "records.bin"
    records.write_bytes(b"".join(k.to_bytes(4, "little") + (k * 7).to_bytes(8, "little") for k in (5, 9)))
    with ProgramBuild(spec(fills=(("counts", str(records)),)), control=False, load=0) as b:
        assert b.obj.map("counts").lookup((9).to_bytes(4, "little")) == (63).to_bytes(8, "little")


def test_variants_are_measured_head_to_head_net_of_the_control():
    sides = [spec(variant=Variant("hash", ("-DCOUNTER_MAP=BPF_MAP_TYPE_HASH",)), packet=str(TRAFFIC)),
             spec(variant=Variant("percpu", ("-DCOUNTER_MAP=BPF_MAP_TYPE_PERCPU_HASH",)), packet=str(TRAFFIC))]
    rows = runner.measure(sides, QUICK)
    measured = [r for r in rows if r["strategy"] != "control" and not r["warmup"]]
    assert {r["strategy"] for r in measured} == {"hash", "percpu"}
    for r in measured:
        assert r["ops"] > 0 and r["gross_ns_per_op"] > 0 and r["map_memory_bytes"] > 0
        assert r["ns_per_op"] == pytest.approx(r["gross_ns_per_op"] - r["control_ns_per_op"])
        assert r["family"] == "xdp_count.bpf.c" and r["mode"] == "test run"


def test_attached_variants_see_live_events_and_leave_nothing_attached(tmp_path):
    source = tmp_path / "schedlat.bpf.c"  # its programs renamed, so that no other test's on_switch is taken for it
    source.write_text(SCHEDLAT.read_text().replace("on_switch", "mbtest_switch"))
    sides = [ProgramSpec(source=str(source), variant=Variant("pid_hash"), attach=True),
             ProgramSpec(source=str(source), variant=Variant("task_storage", ("-DUSE_TASK_STORAGE",)), attach=True)]
    rows = runner.measure(sides, MeasureOptions(samples=2, instances=1, warmup=0, target_ms=60))
    assert all(r["ops"] > 100 and r["events_per_s"] > 0 for r in rows)
    assert gone("prog", "mbtest_switch")


def test_a_load_command_runs_in_its_own_group_and_ends_with_the_load(tmp_path):
    marker = tmp_path / "ran"
    load = f"touch {marker}; while :; do /bin/true; done"  # forks: wakeups and switches
    sides = [ProgramSpec(source=str(SCHEDLAT), variant=Variant("pid_hash"), attach=True, load=load)]
    rows = runner.measure(sides, MeasureOptions(samples=2, instances=1, warmup=0, target_ms=60))
    assert marker.exists() and all(r["ops"] > 0 for r in rows)
    left = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True).stdout.split()
    assert not left, f"the load outlived its run: {left}"


def test_the_verdict_needs_significance_and_size():
    r = lambda ratio, low, high, loads=6: {"ratio": ratio, "ci_low": low, "ci_high": high, "loads": loads}  # noqa: E731
    assert ab.verdict(r(1.30, 1.25, 1.35), 0.05).slower
    assert ab.verdict(r(1.03, 1.01, 1.05), 0.05).call == ab.SAME  # significant, too small to matter
    assert ab.verdict(r(1.20, 0.98, 1.45), 0.05).call == ab.SAME  # large, not significant
    assert ab.verdict(r(0.70, 0.65, 0.75), 0.05).call == ab.FASTER
    assert ab.verdict(r(1.30, 1.25, 1.35, loads=3), 0.05).call == ab.UNDECIDED
    assert ab.verdict(None, 0.05).call == ab.UNDECIDED


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository whose HEAD does about three times the work of HEAD~1 per packet (an
    xorshift-multiply recurrence: no closed form for clang to fold)."""
    root = tmp_path_factory.mktemp("repo")
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (root / "inc").mkdir()
    (root / "inc" / "work.h").write_text("#define ROUNDS 1\n")
    source = root / "prog.bpf.c"
    source.write_text('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include "inc/work.h"\n'
                      'char LICENSE[] SEC("license") = "GPL";\n'
                      'SEC("xdp") int work(struct xdp_md *ctx) { __u64 x = ctx->ingress_ifindex;\n'
                      '  for (int i = 0; i < ROUNDS * 40; i++) x = (x ^ (x >> 13)) * 0x9E3779B97F4A7C15ULL;\n'
                      '  return x == 3 ? XDP_DROP : XDP_PASS; }\n')
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    (root / "inc" / "work.h").write_text("#define ROUNDS 3\n")  # a header change: the revision's tree must follow
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "head")
    return source


def test_ab_calls_a_slower_head_and_exits_1(repo):
    res = run_cli("ab", "HEAD~1", "HEAD", "--source", str(repo), "--instances", "5", "--samples", "3",
                  "--sample-ms", "2", "--format", "json")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["verdict"] == ab.SLOWER and out["ratio"] > 1.5


def test_ab_of_one_revision_against_itself_calls_nothing(repo):
    res = run_cli("ab", "HEAD", "HEAD", "--source", str(repo), "--instances", "2", "--samples", "2",
                  "--sample-ms", "2", "--format", "markdown")
    assert res.returncode == 0, res.stderr
    assert "### mapbench ab: prog.bpf.c" in res.stdout and "base: HEAD (" in res.stdout


BROKEN = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\nchar LICENSE[] SEC("license") = "GPL";\n'


@pytest.mark.parametrize("case", ["compile", "verifier", "prog", "twice", "fill_key", "records", "revision",
                                  "not_pcap", "empty", "no_test_run"])
def test_bad_input_is_one_line_with_the_tools_words(tmp_path, case, repo):
    src = tmp_path / "p.bpf.c"
    args = ["run", "--source", str(src)]
    code, needle = 2, None
    if case == "compile":
        src.write_text(BROKEN + 'SEC("xdp") int f(struct xdp_md *ctx) { return undefined_thing; }\n')
        needle = "p.bpf.c:4: use of undeclared identifier 'undefined_thing'"
    elif case == "verifier":
        src.write_text(BROKEN + 'SEC("xdp") int f(struct xdp_md *ctx) { return *(int *)(long)ctx->data; }\n')
        needle = "the kernel refused it"
    elif case == "prog":
        args, needle = ["run", "--source", str(XDP), "--prog", "nope"], "--prog nope: variant default"
    elif case == "twice":
        args = ["run", "--source", str(XDP), "--variant", "a=-DX", "--variant", "a"]
        needle = "--variant a is given twice"
    elif case == "fill_key":
        src.write_text(BROKEN + "struct k { __u32 a, b; };\nstruct { __uint(type, BPF_MAP_TYPE_HASH); "
                       "__uint(max_entries, 8); __type(key, struct k); __type(value, __u64); } m SEC(\".maps\");\n"
                       'SEC("xdp") int f(struct xdp_md *ctx) { struct k k = {}; bpf_map_lookup_elem(&m, &k); '
                       "return XDP_PASS; }\n")
        args += ["--fill", "m=4"]
        needle = "the key of map m is struct k (8 bytes), not an integer"
    elif case == "records":
        (tmp_path / "r.bin").write_bytes(bytes(13))
        args, needle = ["run", "--source", str(XDP), "--fill", f"counts={tmp_path / 'r.bin'}"], "13 bytes are not whole"
    elif case == "revision":
        args, needle = ["ab", "nope-rev", "HEAD", "--source", str(repo)], "'nope-rev' is not a revision git knows"
    elif case == "not_pcap":
        (tmp_path / "x.pcap").write_bytes(b"hello, not a capture")
        args, needle = ["run", "--source", str(XDP), "--packet", str(tmp_path / "x.pcap")], "not a pcap file"
    elif case == "empty":
        (tmp_path / "x.bin").write_bytes(b"")
        args, needle = ["run", "--source", str(XDP), "--packet", str(tmp_path / "x.bin")], "the file is empty"
    elif case == "no_test_run":
        src.write_text(BROKEN + 'SEC("perf_event") int f(void *ctx) { return 0; }\n')
        code, needle = 3, "which the kernel cannot test-run"
    res = run_cli(*args, "--instances", "1", "--samples", "1", "--sample-ms", "1")
    assert res.returncode == code, res.stderr
    assert needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # the error, and where to see the tool's whole log
    assert "Traceback" not in res.stderr


def test_a_failed_variant_leaves_nothing_loaded(tmp_path):
    src = tmp_path / "p.bpf.c"
    src.write_text(BROKEN + "struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8); __type(key, __u32); "
                   "__type(value, __u64); } leftover_map SEC(\".maps\");\n"
                   'SEC("xdp") int leftover_prog(struct xdp_md *ctx) { return *(int *)(long)ctx->data; }\n')
    res = run_cli("-v", "run", "--source", str(src))
    assert res.returncode == 2 and "invalid access to packet" in res.stderr  # -v: the whole verifier log
    assert gone("prog", "leftover_prog") and gone("map", "leftover_map")
