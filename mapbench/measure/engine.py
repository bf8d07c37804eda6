"""What an engine is: the interface every engine implements, and the plain data the runner
hands it. An engine knows how to turn grid values into specs, how to open a build of a spec
and how to take one sample of a build; the runner (runner.py) owns everything around that:
the plan of every load of a run, pinning, loads, controls, the rotation, control subtraction
and the rows' bookkeeping. See docs/architecture.md for how a row is born."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mapbench.errors import BadInput


@dataclass(frozen=True)
class Axis:
    key: str  # in a sweep file: sizes = [...]
    flag: str  # on the command line: --size 1e3,1e5 (a comma list)
    field: str  # the spec field it sets
    parse: Callable[[Any], Any]  # one value -> the spec's value; BadInput names the flag
    default: tuple = ()  # values when absent; () = the spec's own default
    help: str = ""
    is_flag: bool = False  # on the command line a flag (--no-prealloc), in a sweep a list of booleans
    # on the command line a repeatable flag, never split at commas: "each" occurrence is a value of
    # its own (--variant a=-DX --variant b), or "all" of them make one value (--fill m=10 --fill n=5)
    repeat: str = ""


@dataclass(frozen=True)
class NotMeasured:
    """A grid point that cannot be measured (a strategy without that op, an op the kernel
    refuses): an `unsupported` row, never run."""

    fields: tuple
    reason: str

    def config_fields(self) -> dict:
        return dict(self.fields)


@dataclass(frozen=True)
class MeasureOptions:
    samples: int = 12  # measured samples per load, per side
    instances: int = 5  # fresh loads of every side's programs and maps
    warmup: int = 2  # samples per load flagged as warm-up (kept, not summarised)
    target_ms: float = 5.0  # how long one sample of the slowest side should last
    cpu: int | None = None

    def validate(self) -> MeasureOptions:
        for name, value, low in (("--samples", self.samples, 1), ("--instances", self.instances, 1),
                                 ("--warmup", self.warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadInput(f"{name} {value!r} must be a whole number")
            if value < low:
                raise BadInput(f"{name} {value} must be at least {low}")
        if not (0.1 <= self.target_ms <= 60_000):
            raise BadInput(f"--sample-ms {self.target_ms:g} is outside 0.1 .. 60000")
        return self


@dataclass(frozen=True)
class Host:
    """What the machine offers a run, read once by the runner and handed to make_spec, so that
    specs stay plain data: the CPUs this process may use (the measuring one last) and the
    memory available."""

    cpus: tuple[int, ...]
    memory_available_bytes: int

    @staticmethod
    def here() -> Host:
        return Host(tuple(sorted(os.sched_getaffinity(0))), _memory_available())

    def producer_cpus(self, first: int | None, n: int) -> list[int]:
        """The CPUs of n producers: the measuring CPU first, then the others this process may use."""
        if n > len(self.cpus):
            raise BadInput(f"--producers {n} is above the {len(self.cpus)} CPUs this process may use")
        if first is None:
            return list(self.cpus[:n])
        return [first, *[c for c in self.cpus if c != first]][:n]


def _memory_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


@dataclass(frozen=True)
class Comparison:
    """Sides measured head to head: loaded together, sample by sample in rotating order."""

    engine: str
    sides: tuple
    opts: MeasureOptions

    @property
    def measured(self) -> tuple:
        return tuple(s for s in self.sides if not isinstance(s, NotMeasured))

    @property
    def not_measured(self) -> tuple:
        return tuple(s for s in self.sides if isinstance(s, NotMeasured))

    def samples(self) -> int:
        """Program runs in all, for a progress bar."""
        if not self.measured:
            return 0
        controls = len({s.control_key() for s in self.measured} - {None})
        return self.opts.instances * (self.opts.warmup + self.opts.samples) * (len(self.measured) + controls)


class Spec:
    """What every engine's spec offers the runner (engines' specs are frozen dataclasses)."""

    def config_fields(self) -> dict:  # the configuration columns of its rows
        raise NotImplementedError

    def used_fields(self) -> set[str]:  # the spec fields that change what it measures
        raise NotImplementedError

    def control_key(self) -> tuple | None:
        """Sides with the same key share one control build; None: no control."""
        return None


class Engine(ABC):
    """One way of measuring. Adding an engine is a module with a subclass of this and one line
    in runner.ENGINES; the report, plots, `show` and `diff` read its rows like any other's."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, for `mapbench list`
    note: ClassVar[str]  # what its figure is, for the report
    axes: ClassVar[tuple[Axis, ...]]
    sides: ClassVar[tuple[str, ...]]  # axes measured head to head, in one load, by default
    defaults: ClassVar[MeasureOptions]

    # --- from grid values to specs (plain data, no kernel access) ---
    @abstractmethod
    def make_spec(self, fields: dict, host: Host) -> Spec | NotMeasured:
        """The spec of one grid point (fields: spec field -> parsed value), or NotMeasured."""

    def complete_axes(self, values: dict, side_keys: list[str], host: Host) -> dict:
        """Axis values the engine adds (a baseline side), before the grid is expanded."""
        return values

    def split(self, sides: list) -> list[list]:
        """The sides of one group as several comparisons (sides that must not share a load)."""
        return [sides]

    def check_options(self, opts: MeasureOptions) -> None:
        """A one-line BadInput for measuring options this engine cannot work with."""
        return None

    def refusal(self, spec: Spec) -> str | None:
        """Why the kernel refuses this spec (probed, before the run), or None."""
        return None

    # --- measuring (the runner calls these, in this order, for every load) ---
    def session(self, sides: Sequence[Spec], opts: MeasureOptions, host: Host) -> contextlib.AbstractContextManager:
        """What one load of these sides holds beside its builds (threads of producers, run
        stats): entered before the builds open, left after they close. Its value goes to sample()."""
        return contextlib.nullcontext()

    @abstractmethod
    def open(self, spec: Spec, control: bool, load: int) -> contextlib.AbstractContextManager:
        """A build of spec (its control build if control) for load number `load`: loaded,
        filled, ready to sample; closing it releases every fd."""

    def calibrate(self, builds: list, opts: MeasureOptions, calibration: Any) -> Any:
        """Called on every load with its builds: work per sample, found on the first load
        (calibration None) and kept for the comparison's later loads."""
        return None

    @abstractmethod
    def sample(self, build, number: int, calibration: Any, session: Any) -> Any:
        """One timed sample of one build."""

    def control_figures(self, sample: Any) -> dict[str, list[float]]:
        """A control build's sample as figures that the runner takes the median of per load;
        the medians reach rows() of the sides that share the control."""
        return {}

    @abstractmethod
    def rows(self, build, sample: Any, control: dict[str, float] | None) -> list[dict]:
        """The result rows of one sample (one per producer where there are several): the spec's
        configuration, its figures, net of the control's medians. The runner adds where and
        when (load, sample, order, position, cpu, status)."""


def options_for(engine: Engine, **given) -> MeasureOptions:
    """The engine's defaults, overridden by what was given (None: not given)."""
    return dataclasses.replace(engine.defaults, **{k: v for k, v in given.items() if v is not None})
