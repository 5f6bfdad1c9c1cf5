import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.config import flat_fields
from rebased_bench.kinds import KINDS

RESULTS = Path(__file__).resolve().parent.parent / "results"
FOLDERS = sorted(p for p in RESULTS.rglob("*") if p.is_dir() and p.name in KINDS and any(p.glob("*.parquet")))


def planned_ids(tmp_path, *args) -> set[str]:
    """The case ids a dry run of the command plans (on the CPU, so precision is fp32 unless given)."""
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--dry-run", "--format", "json", "--out", tmp_path])
    assert result.exit_code == 0, result.output
    return {row["case_id"] for row in json.loads(result.stdout)}


def test_there_are_published_results():
    assert FOLDERS


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_published_rows_read_with_plain_pandas_and_carry_provenance(folder):
    rows = pd.read_parquet(folder)  # the store's contract: nothing but rows inside a kind's folder
    assert len(rows) and set(rows["kind"]) == {folder.name}
    for column in ("suite", "case_id", "status", "device", "torch_version", "git_commit", "started_at"):
        assert rows[column].notna().all(), column
    assert rows["case_id"].is_unique


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_published_row_is_a_valid_case_with_its_own_id(folder):
    """Each row's config columns, read back into the kind's typed config, give the row's case id."""
    config = KINDS[folder.name].config
    for file in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(file).to_pylist():
            case = config.from_flat({name: row[name] for name in flat_fields(config) if name in row})
            assert case.case_id == row["case_id"], file


def test_the_published_gpu_sweep_would_resume_not_rerun(tmp_path):
    """Every case of mqar-gpu has its row in results/: new settings must not change old case ids."""
    planned = planned_ids(tmp_path, "mqar", "--suite", "mqar-gpu", "--precision", "bf16")
    assert len(planned) == 15 and planned == set(pd.read_parquet(RESULTS / "mqar-gpu" / "mqar")["case_id"])


def test_published_paper_rows_are_cases_of_the_paper_suite(tmp_path):
    """results/mqar-paper ran a subset of mqar-paper in bf16 (its _README.md): each row is one of its cases."""
    planned = planned_ids(tmp_path, "mqar", "--suite", "mqar-paper", "--precision", "bf16")
    assert set(pd.read_parquet(RESULTS / "mqar-paper" / "mqar")["case_id"]) <= planned


@pytest.mark.parametrize("command, suite, folder", [("mqar", "mqar-quick", "mqar-quick/mqar"),
                                                   ("ablate", "ablate-quick", "ablate-quick/ablate"),
                                                   ("iou", "iou-quick", "iou-quick/iou")])
def test_quick_suites_plan_exactly_their_published_rows(tmp_path, command, suite, folder):
    assert planned_ids(tmp_path, command, "--suite", suite) == set(pd.read_parquet(RESULTS / folder)["case_id"])


def test_published_kernel_rows_are_the_cases_of_the_kernel_suites(tmp_path):
    """results/kernels-h200 ran the four GPU suites in full (its _README.md): one row per case of their union (the
    kernels-dims and kernels-batch cases that are kernels-seq cases share its rows), and no other row."""
    planned = set().union(*(planned_ids(tmp_path, "kernels", "--suite", suite)
                            for suite in ("kernels-seq", "kernels-model", "kernels-batch", "kernels-dims")))
    assert set(pd.read_parquet(RESULTS / "kernels-h200" / "kernels")["case_id"]) == planned
