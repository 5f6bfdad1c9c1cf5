"""Every sweep command the README and docs show is one the CLI accepts: each plans its grid in a dry run."""
import re
import shlex
from pathlib import Path

import pandas as pd
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
        pytest.skip("names the user's own module: test_the_readme_mixer_trains runs it")
    result = CliRunner().invoke(app, [*args, "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, f"{page}: {line}\n{result.output}"


def test_the_readme_mixer_trains(tmp_path, monkeypatch):
    """The README's own mixer, as printed, passes the mixer checks and trains in the recipe."""
    (code,) = re.findall(r"```python\n# my_pkg/my_module.py\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "my_module.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny = ["--seq-lens", "32", "--d-models", "16", "--epochs", "1", "--train-examples", "64", "--test-examples", "16",
            "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu", "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, ["mqar", "--mixers", "my_pkg.my_module:MyMixer", *tiny])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "runs" / "mqar")["status"].tolist() == ["ok"]
