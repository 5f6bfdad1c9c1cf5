"""The package's layering (docs/architecture.md): no import circle, no module importing a layer above its own.

Imports are read with `ast` from every module of rebased_bench/ and of kernels/ (rebased_bench.kernels), function-level
imports included. A module may import modules of its own layer or of layers below.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"rebased_bench": ROOT / "rebased_bench", "rebased_bench.kernels": ROOT / "kernels",
            "rebased_bench.suites": ROOT / "suites"}
# Top to bottom. A name covers that module or package and everything in it; the longest name that covers a module
# decides its layer. "rebased_bench" alone is the package's __init__ (its version): new modules must be placed.
LAYERS = [
    ("cli", ("rebased_bench.cli", "rebased_bench.__main__")),
    ("figures", ("rebased_bench.figures",)),
    ("suites", ("rebased_bench.suite", "rebased_bench.suites", "rebased_bench.kinds", "rebased_bench.estimate")),
    ("runner", ("rebased_bench.runner", "rebased_bench.launcher", "rebased_bench.ray_executor", "rebased_bench.store", "rebased_bench.claims",
                "rebased_bench.env", "rebased_bench.tables", "rebased_bench.analysis", "rebased_bench.progress")),
    ("core", ("rebased_bench.training", "rebased_bench.models", "rebased_bench.data", "rebased_bench.checkpoints",
              "rebased_bench.config", "rebased_bench.console", "rebased_bench.files", "rebased_bench.interrupts",
              "rebased_bench.errors", "rebased_bench.ranges", "rebased_bench.timing", "rebased_bench")),
    ("kernels", ("rebased_bench.kernels",)),
]
MAX_LINES = 350


def modules() -> dict[str, Path]:
    """Every module by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or (prefix != "rebased_bench" and module.startswith(prefix + "."))]
    assert matches, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return max(matches)[1]  # the longest prefix decides


def imports(module: str) -> set[str]:
    """The package modules `module` imports (a name imported from a package counts as its submodule if one)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]  # `import a.b.c` of a non-module attribute: its module
            if target and target != module:
                found.add(target)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    above = sorted(target for target in GRAPH[module] if layer(target) < layer(module))
    assert not above, f"{module} ({LAYERS[layer(module)][0]}) imports {above}"


def test_no_import_circle():
    state = {}  # module -> "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_no_file_in_the_package_is_long():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "rebased_bench").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"
