"""Values given on the command line or in a sweep file: one parser each, and a one-line
BadInput naming the flag and its bound for anything else."""

from __future__ import annotations

import math

from mapbench.binding._libbpf import lib
from mapbench.errors import BadInput

MAX_MAP_SIZE = 2**32 - 1  # max_entries is a u32
MAX_KEY_SIZE = 4 * lib.MB_MAX_KEY_WORDS  # the membership programs build keys of this many bytes at most
MAX_VALUE_SIZE = 8 * lib.MB_MAX_VALUE_WORDS


def check_fixed_size(what: str, fixed: int | None, size: int, why: str) -> None:
    """The one rule for things measured on mapbench's own task: --size must be `fixed`."""
    if fixed is not None and size != fixed:
        raise BadInput(f"--size {size}: {what} {why}: use --size {fixed}")


def parse_whole_number(text, flag: str, what: str = "") -> int:
    """'1e6', '1000000', '1_000_000' (or a TOML number) -> 1000000, exactly (plain integers
    never go through a float); anything else is a one-line BadInput naming the flag."""
    if isinstance(text, bool):
        raise BadInput(f"{flag} {text!r} is not a number")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        if not math.isfinite(text) or text != int(text):
            raise BadInput(f"{flag} {text!r} is not a whole number{what}")
        return int(text)
    raw = str(text).strip().replace("_", "")
    if "e" not in raw.lower():
        try:
            return int(raw)
        except ValueError:
            pass
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{flag} {text!r} is not a number (examples: 1e6, 1000000, 1_000_000)") from None
    if not math.isfinite(value) or value != int(value):
        raise BadInput(f"{flag} {text!r} is not a whole number{what}")
    return int(value)


def parse_size(text) -> int:
    """A map size within the kernel's bounds; anything else is a one-line BadInput."""
    value = parse_whole_number(text, "--size", " of entries")
    if value < 1:
        raise BadInput(f"--size {text!r} must be at least 1 entry")
    if value > MAX_MAP_SIZE:
        raise BadInput(f"--size {text!r} is above the kernel's u32 limit of {MAX_MAP_SIZE} entries")
    return value


def parse_number(text, flag: str) -> float:
    if isinstance(text, bool):
        raise BadInput(f"{flag} {text!r} is not a number")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BadInput(f"{flag} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInput(f"{flag} {text!r} is not a finite number")
    return value


def _multiple(flag: str, step: int, low: int, high: int):
    def parse(text) -> int:
        value = parse_whole_number(text, flag)
        if value % step or not low <= value <= high:
            raise BadInput(f"{flag} {value} must be a multiple of {step} in {low}..{high} bytes")
        return value
    return parse


parse_key_size = _multiple("--key-size", 4, 4, MAX_KEY_SIZE)
parse_value_size = _multiple("--value-size", 8, 8, MAX_VALUE_SIZE)


def parse_fill(text) -> float:
    value = parse_number(text, "--fill")
    if not 0.0 < value <= 1.0:
        raise BadInput(f"--fill {text} is outside (0, 1]: the share of max_entries present")
    return value


def parse_choice(text, flag: str, choices) -> str:
    if text not in choices:
        raise BadInput(f"{flag} {text!r} is unknown: choose one of {', '.join(choices)}")
    return text
