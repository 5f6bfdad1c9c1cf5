"""Range syntax for list options: `128..2048` (doubling), `128..2048:+128` (linear), `64,128,512`, `3e-4,1e-3`.

A range has finite bounds and at most MAX_RANGE_VALUES values, counted as it expands: a range to infinity or with
a step too small to move is one line of error, never a loop that runs until memory is gone.
"""

import math

from .errors import BenchError

MAX_RANGE_VALUES = 10_000


def parse_ints(text: str, name: str = "value") -> list[int]:
    """Parse an integer list or range; raises BenchError with a one-line message."""
    return _parse(text, name, int)


def parse_floats(text: str, name: str = "value") -> list[float]:
    """Parse a float list or range (ranges double or step by +N)."""
    return _parse(text, name, float)


def parse_names(text: str, name: str = "value") -> list[str]:
    """Parse a comma list of names; empty items are an error."""
    items = [item.strip() for item in str(text).split(",")]
    if not text or any(not item for item in items):
        raise BenchError(f"{name}: empty item in {text!r}")
    return items


def _parse(text, name, kind):
    text = str(text).strip()
    if not text:
        raise BenchError(f"{name}: empty range")
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise BenchError(f"{name}: empty item in {text!r}")
        values.extend(_expand(item, name, kind) if ".." in item else [_number(item, name, kind)])
    return values


def _expand(item, name, kind):
    start_text, _, rest = item.partition("..")
    stop_text, _, step_text = rest.partition(":")
    start, stop = _number(start_text, name, kind), _number(stop_text, name, kind)
    if not (_finite(start) and _finite(stop)):
        raise BenchError(f"{name}: a range needs finite bounds in {item!r}")
    if stop < start:
        raise BenchError(f"{name}: empty range {item!r} (stop {stop} < start {start})")
    if step_text:
        if not step_text.startswith("+"):
            raise BenchError(f"{name}: step must look like ':+128' in {item!r}")
        step = _number(step_text[1:], name, kind)
        if not (_finite(step) and step > 0):
            raise BenchError(f"{name}: step must be positive and finite in {item!r}")
        grow = lambda x: x + step  # noqa: E731
    else:
        if start <= 0:
            raise BenchError(f"{name}: a doubling range needs a positive start in {item!r}")
        grow = lambda x: x * 2  # noqa: E731
    values, x = [], start
    last = stop if kind is int else stop * (1 + 1e-9)  # a float range keeps a stop that rounding overshoots
    while x <= last:
        if len(values) == MAX_RANGE_VALUES:
            raise BenchError(f"{name}: {item!r} has more than {MAX_RANGE_VALUES} values; "
                             "narrow it or take a larger step")
        values.append(x)
        x = grow(x)
    return values


def _finite(x) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def _number(text, name, kind):
    try:
        return kind(text.strip())
    except ValueError:
        raise BenchError(f"{name}: {text.strip()!r} is not {'an integer' if kind is int else 'a number'}") from None
