"""Every claim scoped to its machine (issue 18, item 6): fingerprints, the dataset partitioned and
diff refusing by them, rows from before them read with what they recorded, and the report's
conclusions per machine and across machines. No kernel needed.

data/fixtures/intel_xeon.parquet is two comparisons of the default bench run on an Intel Xeon VM
(/work/shared/runs/20261128T055934Z-2044e101.parquet, rows kept as written, schema 1): bloom+hash
/ hash at 1e6 entries, hit ratio 0.5, and syscall updates of six map types. The committed runs in
data/results are an AMD EPYC VM's; both VMs call themselves `vm`."""

import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from mapbench.errors import BadInput
from mapbench.measure import machine
from mapbench.measure.environment import run_environment
from mapbench.results import dataset, diff, history
from mapbench.results import store as results

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results"
AMD = RESULTS / "kernel=6.18.44-fc-v782" / "machine=legacy-amd-epyc-2cpu-vm" / "20261123T200705Z-d1bc4fe0.parquet"
INTEL = ROOT / "data" / "fixtures" / "intel_xeon.parquet"
AMD_ID, INTEL_ID = "legacy-amd-epyc-2cpu-vm", "legacy-intel-xeon-2cpu-vm"
SHARED_INTEL_RUN = Path("/work/shared/runs/20261128T055934Z-2044e101.parquet")

CPUINFO = {
    "amd": "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
           "stepping\t: 1\nmicrocode\t: 0x1000065\nflags\t\t: fpu hypervisor avx2\n\nprocessor\t: 1\n",
    "intel": "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
             "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 8\nmicrocode\t: 0xffffffff\n"
             "flags\t\t: fpu hypervisor\n",
}
CACHES = {"amd": {1: "48K", 2: "1024K", 3: "32768K"}, "intel": {1: "48K", 2: "2048K", 3: "491520K"}}


def fake_machine(root: Path, kind: str, mem_kib: int = 24684092) -> Path:
    """/proc and /sys as a machine of this kind shows them."""
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text(CPUINFO[kind])
    (root / "proc" / "meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree:        1 kB\n")
    for i, (level, size) in enumerate(CACHES[kind].items()):
        index = root / f"sys/devices/system/cpu/cpu0/cache/index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", "Data" if level == 1 else "Unified"), ("size", size)):
            (index / name).write_text(f"{value}\n")
    vulns = root / "sys/devices/system/cpu/vulnerabilities"
    vulns.mkdir(parents=True)
    (vulns / "spectre_v2").write_text("Mitigation: Retpolines; STIBP: disabled\n")
    (vulns / "meltdown").write_text("Not affected\n")
    thp = root / "sys/kernel/mm/transparent_hugepage"
    thp.mkdir(parents=True)
    (thp / "enabled").write_text("always [madvise] never\n")
    return root


def test_a_fingerprint_tells_an_amd_vm_from_an_intel_vm_of_the_same_name(tmp_path):
    amd = machine.facts("vm", "AMD EPYC", 2, fake_machine(tmp_path / "amd", "amd"))
    intel = machine.facts("vm", "Intel(R) Xeon(R) Processor", 2, fake_machine(tmp_path / "intel", "intel"))
    assert re.fullmatch(r"amd-26-2-1-[0-9a-f]{8}", amd["machine"]), amd["machine"]
    assert re.fullmatch(r"intel-6-143-8-[0-9a-f]{8}", intel["machine"]), intel["machine"]
    assert amd["machine_name"] == "AMD EPYC, 2 vCPUs, L2 1 MiB, L3 32 MiB, 23 GiB"
    assert intel["machine_name"] == "Intel Xeon, 2 vCPUs, L2 2 MiB, L3 480 MiB, 23 GiB"
    assert (amd["l2_cache_bytes"], amd["l3_cache_bytes"], amd["memory_total_bytes"]) == (2**20, 2**25, 24684092 * 1024)
    assert amd["microcode"] == "0x1000065" and amd["thp_enabled"] == "madvise"
    assert amd["cpu_vulnerabilities"] == "meltdown: Not affected | spectre_v2: Mitigation: Retpolines; STIBP: disabled"
    # the rest of the fingerprint is in its hash: another hostname, CPU count or memory size is
    # another machine; MemTotal moving by a few MiB (the kernel's own reservations) is not
    root = tmp_path / "amd"
    assert machine.facts("vm2", "AMD EPYC", 2, root)["machine"] != amd["machine"]
    assert machine.facts("vm", "AMD EPYC", 4, root)["machine"] != amd["machine"]
    assert machine.facts("vm", "AMD EPYC", 2, fake_machine(tmp_path / "big", "amd", 2 * 24684092))["machine"] \
        != amd["machine"]
    assert machine.facts("vm", "AMD EPYC", 2, fake_machine(tmp_path / "less", "amd", 24684092 - 8192))["machine"] \
        == amd["machine"]


def test_every_row_records_this_machine_its_vulnerabilities_and_thp():
    env = run_environment()
    assert set(results.ENV_KEYS) <= set(env)
    assert env["machine"].startswith(f"{env['cpu_vendor']}-{env['cpu_family']}-{env['cpu_model_number']}-")
    assert env["machine"] == machine.facts(env["host"], env["cpu_model"], env["nr_cpus"])["machine"]  # stable
    assert env["thp_enabled"] in ("always", "madvise", "never") and env["cpu_vulnerabilities"]
    row = results.make_table([{"sample": 0}], "run", env).to_pylist()[0]
    assert row["machine"] == env["machine"] and row["machine_name"] == env["machine_name"]


def test_the_committed_amd_runs_and_the_intel_run_are_different_machines():
    amd = results.read(RESULTS).to_pandas()
    intel = results.read(INTEL).to_pandas()
    # the runs from before fingerprints are one legacy AMD machine; later ones carry their own id
    assert AMD_ID in set(amd.machine) and set(intel.machine) == {INTEL_ID}
    assert all(m == AMD_ID or m.startswith("amd-") for m in set(amd.machine))
    assert set(amd.host) == set(intel.host) == {"vm"}  # what the host partition used to tell them apart by
    if SHARED_INTEL_RUN.exists():
        assert set(results.read(SHARED_INTEL_RUN).to_pandas().machine) == {INTEL_ID}


def test_rows_from_before_fingerprints_read_with_what_they_recorded_and_unknown_for_the_rest():
    assert pq.read_schema(INTEL).metadata[results.SCHEMA_KEY] == b"1"
    row = results.read(INTEL).to_pylist()[0]
    assert row["machine"] == INTEL_ID
    assert row["machine_name"].startswith("Intel Xeon, 2 CPUs, host vm (") and "unknown" in row["machine_name"]
    for column in ("cpu_vendor", "cpu_family", "microcode", "l2_cache_bytes", "memory_total_bytes",
                   "cpu_vulnerabilities", "thp_enabled"):
        assert row[column] is None, column


def test_schema_version_3_is_written_and_1_to_3_are_read(tmp_path):
    assert results.SCHEMA_VERSION == "3" and results.READABLE_VERSIONS == ("1", "2", "3")
    path = results.write(tmp_path / "r.parquet", results.read(INTEL), append=False)
    assert pq.read_schema(path).metadata[results.SCHEMA_KEY] == b"3"
    assert results.read(path).equals(results.read(INTEL))
    future = tmp_path / "future" / "f.parquet"
    future.parent.mkdir()
    pq.write_table(pq.read_table(INTEL).replace_schema_metadata({results.SCHEMA_KEY: b"4"}), future)
    with pytest.raises(BadInput, match="schema version 4; this mapbench reads versions 1, 2, 3"):
        results.read(future)
    with pytest.raises(BadInput, match="schema version 4"):
        dataset.check(future.parent)


def test_every_committed_run_sits_in_its_kernel_and_machine_partition():
    for f in dataset.files(RESULTS):
        row = results.read_file(f).slice(0, 1).to_pylist()[0]
        assert f.parent.name == f"machine={row['machine']}"
        assert f.parent.parent.name == f"kernel={row['kernel_release']}"


def test_an_old_layout_dataset_still_reads_beside_new_runs_and_import_moves_it(tmp_path):
    root = tmp_path / "results"
    old = root / "kernel=6.18.44-fc-v669" / "host=vm" / INTEL.name
    old.parent.mkdir(parents=True)
    shutil.copy(INTEL, old)
    now = {**run_environment(), "host": "vm", "cpu_model": "Intel(R) Xeon(R) Processor",
           "kernel_release": "6.18.44-fc-v669"}
    new_rows = results.read(INTEL).slice(0, 30).drop_columns(["run_id", *results.ENV_KEYS]).to_pylist()
    [new] = dataset.add(root, results.make_table(new_rows, "new-run", now))
    assert new.parent.name == f"machine={now['machine']}"
    con = dataset.connect(root)
    machines = dict(con.sql("SELECT machine, count(*) FROM results GROUP BY machine").fetchall())
    assert machines == {INTEL_ID: pq.read_metadata(INTEL).num_rows, now["machine"]: 30}
    assert con.sql(f"SELECT DISTINCT machine_name FROM results WHERE machine = '{INTEL_ID}'").fetchall()[0][0] \
        == results.read(INTEL).column("machine_name")[0].as_py()
    series = history.history(root, {"strategy": "bloom", "map_size": 1_000_000}, machine=INTEL_ID)
    assert {r["machine"] for s in series for r in s["runs"]} == {INTEL_ID}
    res = run_cli("import", str(old), "--dataset", str(root))
    assert res.returncode == 0, res.stderr
    assert {f.parent.name for f in dataset.files(root)} == {f"machine={INTEL_ID}", f"machine={now['machine']}"}


def test_diff_refuses_another_machine_in_one_line_naming_both_unless_told():
    res = run_cli("diff", str(AMD), str(INTEL))
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "AMD EPYC, 2 CPUs, host vm" in line and f"[{AMD_ID}]" in line
    assert "Intel Xeon, 2 CPUs, host vm" in line and f"[{INTEL_ID}]" in line and "--across-machines" in line
    res = run_cli("diff", str(AMD), str(INTEL), "--across-machines", "--force")  # and another kernel
    assert res.returncode in (0, 1), res.stderr
    assert f"environment differs: machine: {AMD_ID} -> {INTEL_ID}" in " ".join(res.stderr.split())


def test_diff_matches_a_run_from_before_fingerprints_on_what_it_recorded():
    old = results.read(INTEL).to_pandas()
    here = {**run_environment(), "host": "vm", "cpu_model": "Intel(R) Xeon(R) Processor", "nr_cpus": 2}
    new = old.assign(**{k: here[k] for k in results.ENV_KEYS if k != "kernel_release"})
    note = diff.machine_note(old, new)
    assert "host, CPU model and CPU count only" in note and INTEL_ID in note and here["machine"] in note
    other = new.assign(machine="amd-26-2-1-00000000", machine_name="AMD EPYC", cpu_model="AMD EPYC")
    with pytest.raises(BadInput, match="different machines .* pass --across-machines"):
        diff.machine_note(new, other)
    with pytest.raises(BadInput, match="different machines"):
        diff.machine_note(old, other)
    assert diff.machine_note(old, other, across_machines=True) == ""


def test_report_scopes_each_conclusion_and_tables_them_across_machines(tmp_path):
    out = tmp_path / "report.md"
    res = run_cli("report", str(AMD), str(INTEL), "--out", str(out))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert text.index("## Across machines") < text.index("## Measured on this AMD EPYC")
    assert "## Measured on this Intel Xeon, 2 CPUs, host vm" in text
    assert re.search(r"### Conclusions on this AMD EPYC, .*\[machine legacy-amd-epyc-2cpu-vm\], kernel "
                     r"6\.18\.44-fc-v782\n", text)
    assert re.search(r"### Conclusions on this Intel Xeon, .*\[machine legacy-intel-xeon-2cpu-vm\], kernel "
                     r"6\.18\.44-fc-v669\n", text)
    across = text[text.index("## Across machines"):text.index("## Measured on")]
    header = next(line for line in across.splitlines() if line.startswith("| conclusion"))
    assert f"| AMD EPYC [{AMD_ID}] | Intel Xeon [{INTEL_ID}] | max / min | on all machines |" in header
    [bloom] = [line for line in across.splitlines() if "hit 0.5" in line and "bloom / hash" in line]
    assert bloom.endswith("| differs |")  # the filter pays on the AMD VM and costs on the Intel one
    assert re.search(r"\| 0\.778 \(.*\) \| 1\.316 \(.*\) \| 1\.69x \| differs \|$", bloom)
    # the syscall comparisons had 2 loads in those runs: too few for a verdict on either machine
    [array] = [line for line in across.splitlines() if "array 100,000 entries / hash" in line]
    assert array.endswith("| not shown on all |")
    assert "6 conclusions measured on more than one machine (holds on all: 0; differs: 1; not shown on all: 5)" \
        in across
    # one machine: no table across machines, and its conclusions still name it
    res = run_cli("report", str(INTEL))
    assert res.returncode == 0, res.stderr
    assert "## Across machines" not in res.stdout
    assert "## Conclusions on this Intel Xeon, 2 CPUs" in res.stdout and "## Measured on" not in res.stdout
