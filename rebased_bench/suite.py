"""Suite files: TOML data naming a kind, a grid of axes and fixed fields. CLI flags override both."""

import itertools
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
    grid: dict  # axis -> list of values, expanded as a cartesian product in file order
    fixed: dict = field(default_factory=dict)

    def override(self, grid: dict, fixed: dict) -> "Suite":
        """A copy with the given (non-None) grid axes and fixed fields replaced."""
        return Suite(self.name, self.kind, self.description,
                     {**self.grid, **{k: v for k, v in grid.items() if v is not None}},
                     {**self.fixed, **{k: v for k, v in fixed.items() if v is not None}})

    def cases(self) -> list[dict]:
        """The expanded grid: one config dict per case."""
        axes = list(self.grid)
        return [{**dict(zip(axes, values)), **self.fixed} for values in itertools.product(*self.grid.values())]


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
        grid = {axis: _values(axis, values) for axis, values in data["grid"].items()}
        return Suite(path.stem, data["kind"], data.get("description", ""), grid, data.get("fixed", {}))
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise BenchError(f"suite {path}: malformed ({type(exc).__name__}: {exc})") from None


def _values(axis, values):
    """A grid axis as a list: a TOML list, or a range string such as "64..256"."""
    if isinstance(values, list):
        return values
    if isinstance(values, str) and ".." in values:
        return parse_floats(values, axis) if "." in values.replace("..", "") else parse_ints(values, axis)
    return [values]
