"""Every sweep command the README and docs show is one the CLI accepts: each plans its grid in a dry run."""
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebased_bench.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SWEEPS = ("mqar", "kernels", "ablate", "iou")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command line) of each `rebased-bench <sweep> ...` line inside a bash block, continuations joined."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"^\S*=\S+\s+", "", line.split("#")[0].strip())  # drop CUDA_VISIBLE_DEVICES=0 etc.
                if line.startswith("rebased-bench ") and line.split()[1] in SWEEPS and "$" not in line:
                    found.append((page.name, line.rstrip("& ")))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_every_sweep_command():
    assert {shlex.split(line)[1] for _, line in COMMANDS} == set(SWEEPS)


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}:{line[14:60]}" for p, line in COMMANDS])
def test_a_shown_command_plans_its_grid(tmp_path, page, line):
    args = [a for a in shlex.split(line)[1:] if a not in ("--profile", "--save-checkpoints")]
    if "my_pkg" in line:
        pytest.skip("names the user's own module")
    result = CliRunner().invoke(app, [*args, "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, f"{page}: {line}\n{result.output}"
