"""`rebased-bench ls`: the built-in suites and their grids."""

from rich.table import Table

from .. import console
from ..errors import BenchError
from ..suite import load_suite, suite_files


def list_suites():
    """List the built-in suites and their grids (a broken one is reported on stderr, the rest still listed)."""
    table = Table(title="Built-in suites")
    for column in ("suite", "kind", "cases", "grid", "description"):
        table.add_column(column)
    for name in sorted(suite_files()):
        try:
            suite = load_suite(name)
            cases = len(suite.configs())
        except BenchError as exc:
            console.warn(f"suite {name}: {exc}")
            continue
        grid = "; ".join(f"{axis}={','.join(map(str, values))}" for axis, values in suite.grid.items())
        table.add_row(name, suite.kind.name, str(cases), grid, suite.description)
    console.show(table)
