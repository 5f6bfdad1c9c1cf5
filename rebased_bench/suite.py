"""Suite files: TOML data naming a kind, grids of axes and fixed fields. CLI flags override both.

`[grid]` is one cartesian product; `[[grid]]` (an array of tables) is several, whose cases are joined:
a suite can give short sequences more examples than long ones, as zoology's lists of configs do.
"""

import itertools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import BenchError
from .ranges import parse_floats, parse_ints


@dataclass
class Suite:
    name: str
    kind: str
    description: str
    grids: list[dict]  # each: axis -> list of values, expanded as a cartesian product in file order
    fixed: dict = field(default_factory=dict)

    def override(self, grid: dict, fixed: dict) -> "Suite":
        """A copy with the given (non-None) axes and fixed fields replaced in every grid.

        A flag replaces the field wherever the suite sets it, in a grid or among the fixed fields.
        """
        grid = {k: v for k, v in grid.items() if v is not None}
        fixed = {k: v for k, v in fixed.items() if v is not None}
        grids = [{axis: values for axis, values in g.items() if axis not in fixed} | grid for g in self.grids]
        return Suite(self.name, self.kind, self.description, grids, {**self.fixed, **fixed})

    def cases(self) -> list[dict]:
        """The expanded grids: one config dict per case, duplicates dropped."""
        cases = {}
        for grid in self.grids:
            for values in itertools.product(*grid.values()):
                case = {**self.fixed, **dict(zip(grid, values))}
                cases.setdefault(json.dumps(case, sort_keys=True), case)
        return list(cases.values())


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
        data = tomllib.loads(path.read_text())
        grids = data["grid"] if isinstance(data["grid"], list) else [data["grid"]]
        grids = [{axis: _values(axis, values) for axis, values in grid.items()} for grid in grids]
        return Suite(path.stem, data["kind"], data.get("description", ""), grids, data.get("fixed", {}))
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise BenchError(f"suite {path}: malformed ({type(exc).__name__}: {exc})") from None


def _values(axis, values):
    """A grid axis as a list: a TOML list, or a range string such as "64..256"."""
    if isinstance(values, list):
        return values
    if isinstance(values, str) and ".." in values:
        return parse_floats(values, axis) if "." in values.replace("..", "") else parse_ints(values, axis)
    return [values]
