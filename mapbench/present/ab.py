"""`mapbench ab`: the verdict on HEAD against BASE, both measured head to head in one run
(docs/own-programs.md, "A CI gate"), as text, Markdown for a pull-request comment, or JSON."""

from __future__ import annotations

from dataclasses import dataclass

from mapbench.present.render import fmt_ns, markdown
from mapbench.results.stats import ABOVE, BELOW, MIN_LOADS_FOR_VERDICT, TOO_FEW_LOADS, direction

SLOWER, FASTER, SAME, UNDECIDED = "slower", "faster", "no change beyond the threshold", "undecided"


@dataclass(frozen=True)
class Verdict:
    call: str  # SLOWER, FASTER, SAME or UNDECIDED
    ratio: dict | None  # summary.head_to_head's head / base ratio
    threshold: float

    @property
    def slower(self) -> bool:
        return self.call == SLOWER

    def sentence(self) -> str:
        r = self.ratio
        if r is None or r.get("ratio") is None:
            return "HEAD and BASE have no ratio (a figure at or below its control's level): nothing to call"
        figure = f"{r['ratio']:.3f}x BASE" + (f" (95 % CI {r['ci_low']:.3f} .. {r['ci_high']:.3f})"
                                               if r.get("ci_low") is not None else "")
        over = f"over {r['loads']} loads, threshold {self.threshold:.0%}"
        if self.call == UNDECIDED:
            return (f"HEAD costs {figure} {over}: too few loads for a verdict "
                    f"(it needs {MIN_LOADS_FOR_VERDICT})")
        if self.call == SAME:
            return f"HEAD shows no change beyond the threshold: it costs {figure} {over}"
        return f"HEAD is {self.call}: it costs {figure} {over}"


def verdict(ratio: dict | None, threshold: float) -> Verdict:
    """Slower when the ratio's CI lies above 1 (stats.direction: enough loads, significant) and
    the ratio itself is above 1 + threshold (large enough to matter); faster the other way."""
    if ratio is None or ratio.get("ratio") is None:
        return Verdict(UNDECIDED, ratio, threshold)
    side = direction(ratio)
    if side == TOO_FEW_LOADS:
        return Verdict(UNDECIDED, ratio, threshold)
    if side == ABOVE and ratio["ratio"] > 1 + threshold:
        return Verdict(SLOWER, ratio, threshold)
    if side == BELOW and ratio["ratio"] < 1 - threshold:
        return Verdict(FASTER, ratio, threshold)
    return Verdict(SAME, ratio, threshold)


def table_rows(records: list[dict], shown: dict[str, str]) -> list[list[str]]:
    return [[f"{r['strategy']}: {shown.get(r['strategy'], '')}", fmt_ns(r["median_ns_per_op"]),
             f"{fmt_ns(r['ci_low'])} .. {fmt_ns(r['ci_high'])}", fmt_ns(r["control_ns_per_op"]),
             f"{r['samples']} / {r['instances']} loads"] for r in records]


HEADER = ["side", "ns per run", "95% CI", "control ns", "samples"]


def markdown_comment(v: Verdict, records: list[dict], shown: dict[str, str], what: str, machine: str,
                     run_id: str) -> str:
    mark = {SLOWER: "🔴", FASTER: "🟢", SAME: "⚪", UNDECIDED: "⚪"}[v.call]
    return "\n".join([
        f"### mapbench ab: {what}", "",
        f"{mark} **{v.sentence()}**", "",
        markdown(HEADER, table_rows(records, shown)), "",
        f"Measured on {machine}, BASE and HEAD loaded together and run sample by sample in one run "
        f"(`{run_id}`); figures net of empty programs of the same types. The verdict needs the ratio's 95 % CI "
        "above 1 and the ratio above 1 + threshold.",
    ]) + "\n"
