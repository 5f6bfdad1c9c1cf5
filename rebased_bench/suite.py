"""Suite files: TOML data naming a kind, one grid of axes and fixed fields, checked against the kind's typed config.

`[grid]` is one cartesian product: a suite is one protocol, so a flag that sets an axis sets the whole sweep
(another protocol is another suite). An axis is a TOML list, or for a numeric field a range string such as
"64..256" (the syntax of rebased_bench/ranges.py). CLI flags override suite fields. Any problem is one BenchError
naming the file (or the command line), the field and what it expected, raised before anything runs.
"""

import dataclasses
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import Config, FieldError, flat_fields, value_type
from .errors import BenchError
from .kinds import KINDS
from .ranges import parse_floats, parse_ints
from .runner import SuiteKind

KEYS = ("kind", "description", "grid", "fixed")


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    kind: SuiteKind
    description: str
    grid: dict  # axis -> list of values, expanded as a cartesian product in file order
    fixed: dict
    flagged: frozenset = frozenset()  # the fields command-line flags set

    def override(self, grid: dict, fixed: dict) -> "Suite":
        """A copy with the given (non-None) axes and fixed fields replaced.

        A flag replaces the field wherever the suite sets it, in the grid or among the fixed fields.
        """
        grid = {k: v for k, v in grid.items() if v is not None}
        fixed = {k: v for k, v in fixed.items() if v is not None}
        axes = {axis: values for axis, values in self.grid.items() if axis not in fixed} | grid
        return dataclasses.replace(self, grid=axes, fixed={**self.fixed, **fixed},
                                   flagged=self.flagged | set(grid) | set(fixed))

    def size(self) -> int:
        """How many cases the grid makes, known before it is expanded."""
        return math.prod(len(values) for values in self.grid.values())

    def cases(self) -> list[dict]:
        """The expanded grid: one dict of flat fields per case, duplicates dropped."""
        cases = {}
        for values in itertools.product(*self.grid.values()):
            case = {**self.fixed, **dict(zip(self.grid, values))}
            cases.setdefault(json.dumps(case, sort_keys=True, default=repr), case)
        return list(cases.values())

    def configs(self) -> list[Config]:
        """Every case as the kind's typed config, checked; the first bad one is a BenchError saying where and why."""
        configs = []
        for case in self.cases():
            try:
                configs.append(self.kind.config.from_flat(case))
            except FieldError as exc:
                raise BenchError(f"{'command line' if exc.field in self.flagged else self.path}: {exc}") from None
            except BenchError as exc:
                flags = " with the command-line flags" if self.flagged else ""
                raise BenchError(f"{self.path}{flags}: {exc}") from None
        return configs


def suite_files() -> dict[str, Path]:
    """Built-in suites shipped with the package, by name."""
    folder = resources.files("rebased_bench.suites")
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".toml")}


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file by path; BenchError when neither exists or it is malformed."""
    builtin = suite_files()
    path = builtin.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise BenchError(f"unknown suite {name_or_path!r}; built-in: {', '.join(sorted(builtin))}; or a .toml path")
    try:
        return _parse(path, tomllib.loads(path.read_bytes().decode("utf-8")))
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}") from None


def _parse(path: Path, data: dict) -> Suite:
    for key in data:
        if key not in KEYS:
            raise BenchError(f"{key}: unknown key; a suite has {', '.join(KEYS)}")
    for key in ("kind", "grid"):
        if key not in data:
            raise BenchError(f"{key}: missing")
    kind = KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if kind is None:
        raise BenchError(f"kind: expected one of {', '.join(map(repr, KINDS))}, got {data['kind']!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise BenchError(f"description: expected a string, got {description!r}")
    grid = data["grid"]
    if isinstance(grid, list):
        raise BenchError("grid: a suite has one grid ([grid]): one protocol; put another in a suite of its own")
    if not isinstance(grid, dict):
        raise BenchError(f"grid: expected a table of axes ([grid]), got {grid!r}")
    fixed = data.get("fixed", {})
    if not isinstance(fixed, dict):
        raise BenchError(f"fixed: expected a table of fields, got {fixed!r}")
    fields = flat_fields(kind.config)
    for name in [*fixed, *grid]:
        if name not in fields:
            raise FieldError(name, f"unknown field; {kind.name} suites take {', '.join(fields)}")
    grid = {axis: _axis(kind.config, axis, values) for axis, values in grid.items()}
    return Suite(path.stem, path, kind, description, grid, fixed)


def _axis(config: type[Config], name: str, values) -> list:
    """A grid axis as a non-empty list: a TOML list, a range string of a numeric field, or one value."""
    number = value_type(flat_fields(config)[name][1])
    if isinstance(values, str) and number in (int, float):
        try:
            values = [config.field_value(name, values)]  # a string the field takes itself ("paper", "auto")
        except FieldError:
            values = (parse_ints if number is int else parse_floats)(values, name)
    values = values if isinstance(values, list) else [values]
    if not values:
        raise FieldError(name, "an empty grid axis (no cases)")
    return values
