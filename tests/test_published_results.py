import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rebased_bench.runner import KINDS
from rebased_bench import cli  # noqa: F401  (registers every suite kind)

RESULTS = Path(__file__).resolve().parent.parent / "results"
FOLDERS = sorted(p for p in RESULTS.rglob("*") if p.is_dir() and p.name in KINDS and any(p.glob("*.parquet")))


def test_there_are_published_results():
    assert FOLDERS


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_published_rows_read_with_plain_pandas_and_carry_provenance(folder):
    rows = pd.read_parquet(folder)  # the store's contract: nothing but rows inside a kind's folder
    assert len(rows) and set(rows["kind"]) == {folder.name}
    for column in ("suite", "case_id", "status", "device", "torch_version", "git_commit", "started_at"):
        assert rows[column].notna().all(), column
    assert rows["case_id"].is_unique


def test_the_published_figure1_sweep_would_resume_not_rerun():
    """Every case of mqar-fig1-lite has its row in results/: new settings must not change old case ids."""
    result = CliRunner().invoke(cli.app, ["mqar", "--suite", "mqar-fig1-lite", "--precision", "bf16", "--device", "cpu",
                                      "--dry-run", "--format", "json", "--out", str(RESULTS / "mqar-fig1-lite")])
    assert result.exit_code == 0, result.output
    planned = {row["case_id"] for row in json.loads(result.stdout)}
    assert len(planned) == 80 and planned <= set(pd.read_parquet(RESULTS / "mqar-fig1-lite" / "mqar")["case_id"])
