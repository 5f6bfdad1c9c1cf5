from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest
import torch

from rebased_bench.config import Config, case_id
from rebased_bench.errors import BenchError
from rebased_bench.runner import SuiteKind, run_sweep
from rebased_bench.store import Store, read_rows

CALLS = []


@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    x: int


def _square(case, device, state_path=None):
    CALLS.append(case.x)
    if case.x == 3:
        raise ValueError("three is not allowed")
    return {"y": float(case.x ** 2)}


KIND = SuiteKind("toy", Toy, pa.schema([("y", pa.float64())]), _square)


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def _sweep(tmp_path, xs, **kwargs):
    return run_sweep(KIND, "toy-suite", [Toy(x=x) for x in xs], Store(tmp_path, "toy", KIND.schema),
                     torch.device("cpu"), **kwargs)


def test_error_rows_do_not_stop_the_sweep_and_the_store_reads_back(tmp_path):
    report = _sweep(tmp_path, [1, 2, 3, 4])
    assert (report.ok, report.errors) == (3, 1)
    rows = pd.read_parquet(tmp_path / "toy")  # the contract: plain pandas reads the folder
    assert len(rows) == 4
    error = rows[rows["status"] == "error"].iloc[0]
    assert error["x"] == 3 and "three is not allowed" in error["error"] and pd.isna(error["y"])
    assert rows.loc[rows["x"] == 4, "y"].item() == 16.0
    assert set(rows["git_commit"]) and set(rows["torch_version"]) == {torch.__version__}


def test_resume_runs_only_missing_cases_and_force_reruns(tmp_path):
    _sweep(tmp_path, [1, 2])
    CALLS.clear()
    report = _sweep(tmp_path, [1, 2, 4])
    assert CALLS == [4] and report.skipped == 2
    CALLS.clear()
    _sweep(tmp_path, [1], force=True)
    assert CALLS == [1]
    assert len(read_rows(tmp_path / "toy")) == 3


def test_interrupt_keeps_finished_rows(tmp_path):
    def interrupting(tasks, run, display):
        for i, task in enumerate(tasks):
            if i == 2:
                raise KeyboardInterrupt
            yield run(*task, display=display)
    report = _sweep(tmp_path, [1, 2, 4, 5], executor=interrupting)
    assert report.interrupted and report.ok == 2
    CALLS.clear()
    _sweep(tmp_path, [1, 2, 4, 5])
    assert CALLS == [4, 5]
    assert not list((tmp_path / "toy").glob(".*tmp"))


def test_corrupt_files_are_reported_and_skipped(tmp_path, capsys):
    _sweep(tmp_path, [1, 2])
    (tmp_path / "toy" / "broken.parquet").write_bytes(b"not parquet")
    assert len(read_rows(tmp_path / "toy")) == 2
    assert "broken.parquet" in capsys.readouterr().err


def test_case_ids_are_stable_hashes_of_the_config():
    assert case_id({"a": 1, "b": 2.0}) == case_id({"b": 2.0, "a": 1})
    assert case_id({"a": 1}) != case_id({"a": 2})
    assert Toy(x=4).case_id == case_id({"x": 4})


def test_unwritable_out_is_a_bench_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="cannot write"):
        Store(blocker, "toy", KIND.schema)


def test_a_suite_is_one_grid_and_flags_override_it(tmp_path):
    from rebased_bench.suite import load_suite
    path = tmp_path / "one.toml"
    path.write_text('kind = "mqar"\n[fixed]\nepochs = 2\n[grid]\nseq_len = "64..256"\ntrain_examples = [800]\n')
    suite = load_suite(str(path))
    assert [(c["seq_len"], c["train_examples"], c["epochs"]) for c in suite.cases()] == [
        (64, 800, 2), (128, 800, 2), (256, 800, 2)]
    flagged = suite.override({"seq_len": [64]}, {"train_examples": 50, "epochs": None})
    assert flagged.cases() == [{"epochs": 2, "seq_len": 64, "train_examples": 50}]
    assert flagged.flagged == {"seq_len", "train_examples"}


def test_a_suite_with_two_grids_is_refused(tmp_path):
    from rebased_bench.suite import load_suite
    path = tmp_path / "two.toml"
    path.write_text('kind = "mqar"\n[[grid]]\nseq_len = [64]\n[[grid]]\nseq_len = [128]\n')
    with pytest.raises(BenchError, match="a suite has one grid"):
        load_suite(str(path))
