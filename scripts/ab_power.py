"""How often does `mapbench ab` call a change where there is none, and how often does it call a
real one? Measured by running it (docs/own-programs.md, "How far to trust the gate"):

    python scripts/ab_power.py [--runs 20] [--markdown] [-- ab options...]

In a scratch git repository holding examples/xdp_count (its source and capture), HEAD~1 is the
example as it is and HEAD does 1.3 times its map work per packet: for three packets in ten (by
source address) it adds to a second counter, a lookup and an atomic add like the first.
- A/A: `mapbench ab HEAD~1 HEAD~1` --runs times: every call (slower or faster) is a false alarm.
- Power: `mapbench ab HEAD~1 HEAD` --runs times: each "slower" is a detection.
The runs alternate (A/A, power, A/A, ...) so that both sample the same stretch of the machine's
day. Prints each run's ratio, CI and verdict, then the counts."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "xdp_count"
# HEAD's change: 1.3x the map work per packet, on average over the packets
SECOND_COUNTER = """	if ((src * 2654435761u) % 10 < 3) { /* a second counter for three sources in ten */
		__u32 other = src ^ 0x5a5a5a5a;
		__u64 *m = bpf_map_lookup_elem(&counts, &other);

		if (m)
			__sync_fetch_and_add(m, 1);
		else
			bpf_map_update_elem(&counts, &other, &one, BPF_NOEXIST);
	}
	n = bpf_map_lookup_elem(&counts, &src);"""


def scratch_repo(into: Path) -> Path:
    git = lambda *a: subprocess.run(["git", "-C", str(into), *a], check=True, capture_output=True)  # noqa: E731
    ident = ["-c", "user.name=ab_power", "-c", "user.email=ab_power@localhost"]
    git("init", "-q")
    for name in ("xdp_count.bpf.c", "traffic.pcap"):
        shutil.copy(EXAMPLE / name, into / name)
    git("add", ".")
    git(*ident, "commit", "-qm", "base: the example")
    source = into / "xdp_count.bpf.c"
    text = source.read_text()
    assert "\tn = bpf_map_lookup_elem(&counts, &src);" in text
    source.write_text(text.replace("\tn = bpf_map_lookup_elem(&counts, &src);", SECOND_COUNTER, 1))
    git(*ident, "commit", "-qam", "head: 1.3x the map work per packet")
    return source


def ab(source: Path, base: str, head: str, options: list[str]) -> dict:
    cmd = [sys.executable, "-m", "mapbench.cli", "ab", base, head, "--source", str(source),
           "--packet", str(source.with_name("traffic.pcap")), "--format", "json", *options]
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode not in (0, 1):
        raise SystemExit(f"mapbench ab failed ({res.returncode}): {res.stderr.strip()}")
    return {**json.loads(res.stdout), "exit": res.returncode, "seconds": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("options", nargs="*", help="options for mapbench ab (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ab-power-") as tmp:
        source = scratch_repo(Path(tmp))
        results = {"A/A": [], "1.3x": []}
        for i in range(args.runs):
            for kind, head in (("A/A", "HEAD~1"), ("1.3x", "HEAD")):
                r = ab(source, "HEAD~1", head, args.options)
                results[kind].append(r)
                print(f"{kind:5} {i + 1:2}: {r['ratio']:.3f} ({r['ci_low']:.3f} .. {r['ci_high']:.3f}) "
                      f"{r['loads']} loads, {r['verdict']}, exit {r['exit']}, {r['seconds']:.0f} s", flush=True)
    aa, power = results["A/A"], results["1.3x"]
    false_alarms = sum(r["verdict"] in ("slower", "faster") for r in aa)
    detections = sum(r["verdict"] == "slower" for r in power)
    covered = sum(r["ci_low"] <= 1 <= r["ci_high"] for r in aa)
    ratios = sorted(r["ratio"] for r in power)
    seconds = [r["seconds"] for r in aa + power]
    lines = [f"A/A: {false_alarms} false alarm(s) in {len(aa)} runs; the CI held 1 in {covered} of {len(aa)}",
             f"1.3x: called slower in {detections} of {len(power)} runs; its ratio {ratios[0]:.3f} .. {ratios[-1]:.3f} "
             f"(median {ratios[len(ratios) // 2]:.3f})",
             f"one ab run: {min(seconds):.0f} .. {max(seconds):.0f} s"]
    if args.markdown:
        print("\n".join(f"- {line}" for line in lines))
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
