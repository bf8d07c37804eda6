"""The diff gate against real noise: two default benches of the same code, run back to back on
this kind of VM (data/fixtures/real/, copied from the runs named in their run_id column).
Nothing may be called between them, and a 1.3x slowdown of one configuration of each engine,
laid over the second run's real samples, must be. No kernel needed."""

from pathlib import Path

import pytest

from mapbench.results import diff
from mapbench.results import store as results
from mapbench.results.store import config_key

REAL = Path(__file__).resolve().parents[2] / "data" / "fixtures" / "real"


@pytest.fixture(scope="module")
def pair():
    return results.read(REAL / "first.parquet").to_pandas(), results.read(REAL / "second.parquet").to_pandas()


def test_two_default_benches_of_the_same_code_call_nothing(pair):
    result = diff.diff(*pair)
    assert result.counts()["slower"] == 0 and result.counts()["faster"] == 0
    assert len(result.changes) > 150


@pytest.mark.parametrize("engine", ["kernel", "syscall", "attached", "reference"])
def test_a_1_3x_slowdown_of_one_configuration_is_called(pair, engine):
    base, new = pair
    aa = diff.diff(base, new)
    # the configuration of this engine the A/A pair resolves best (smallest detectable change)
    target = min((c for c in aa.changes if c.config["engine"] == engine and c.detectable),
                 key=lambda c: c.detectable)
    slow = new.copy()
    keys = slow.apply(lambda r: config_key(r.to_dict()), axis=1)
    pick = (keys == config_key(target.config)) & (slow.strategy != "control")
    slow.loc[pick, "ns_per_op"] *= 1.3
    result = diff.diff(base, slow)
    called = [c for c in result.changes if c.verdict in ("slower", "faster")]
    assert [config_key(c.config) for c in called] == [config_key(target.config)]
    assert called[0].verdict == "slower"
