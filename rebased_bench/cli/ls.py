"""`rebased-bench ls`: the built-in suites and their grids."""

import json

from rich.table import Table

from .. import console
from ..errors import BenchError
from ..suite import load_suite, suite_files
from .shared import Format, FormatOpt


def list_suites(format: FormatOpt = Format.table):
    """List the built-in suites and their grids (a broken one is reported on stderr, the rest still listed)."""
    listed = []
    for name in sorted(suite_files()):
        try:
            suite = load_suite(name)
            cases = len(suite.configs())
        except BenchError as exc:
            console.warn(f"suite {name}: {exc}")
            continue
        listed.append({"name": name, "kind": suite.kind.name, "cases": cases, "grid": suite.grid, "fixed": suite.fixed,
                       "description": suite.description})
    if format is Format.json:
        console.out(json.dumps(listed, indent=1))
        return
    table = Table(title="Built-in suites")
    for column in ("suite", "kind", "cases", "grid", "description"):
        table.add_column(column)
    for suite in listed:
        grid = "; ".join(f"{axis}={','.join(map(str, values))}" for axis, values in suite["grid"].items())
        table.add_row(suite["name"], suite["kind"], str(suite["cases"]), grid, suite["description"])
    console.show(table)
