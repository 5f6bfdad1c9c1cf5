import json

import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rebased_bench import __version__
from rebased_bench.cli import app

TINY = ["--seq-lens", "32", "--d-models", "16", "--epochs", "1", "--train-examples", "64",
        "--test-examples", "16", "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu"]


class GatedMixer(nn.Module):
    """A user mixer defined in a test module: a causal running mean, gated."""

    def __init__(self, d_model):
        super().__init__()
        self.gate = nn.Linear(d_model, d_model)

    def forward(self, x):  # (batch, seq_len, d_model)
        steps = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return torch.sigmoid(self.gate(x)) * x.cumsum(1) / steps


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_mqar_writes_rows_and_a_rerun_resumes(tmp_path):
    result = invoke("mqar", "--mixers", "attention,rebased", *TINY, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "mqar")
    assert sorted(rows["mixer"]) == ["attention", "rebased"] and set(rows["status"]) == {"ok"}
    for column in ("suite", "case_id", "accuracy", "final_accuracy", "best_epoch", "train_seconds",
                   "tokens_per_second", "params", "device", "precision", "git_commit", "git_dirty",
                   "torch_version", "triton_version", "gpu_name", "started_at", "num_kv_pairs"):
        assert column in rows
    assert "MQAR accuracy" in result.stdout
    again = invoke("mqar", "--mixers", "attention,rebased", *TINY, "--out", tmp_path)
    assert again.exit_code == 0
    assert "2 of 2 cases already done" in again.stderr
    assert len(pd.read_parquet(tmp_path / "mqar")) == 2


def test_user_mixer_by_import_path(tmp_path):
    result = invoke("mqar", "--mixers", "test_cli:GatedMixer", *TINY, "--out", tmp_path, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "mqar")
    assert rows["mixer"].tolist() == ["test_cli:GatedMixer"] and rows["status"].tolist() == ["ok"]
    assert '"mixer": "test_cli:GatedMixer"' in result.stdout


def test_dry_run_prints_the_grid_and_runs_nothing(tmp_path):
    result = invoke("mqar", "--suite", "mqar-paper", "--dry-run", "--format", "json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.count('"case_id"') == 5 * 4 * 5 * 4 * 5 == 2000  # mixers x d_model x seq_len x lr x seed
    for mixer in ("rebased", "based", "rwkv", "mamba", "conv_attention"):
        assert f'"{mixer}"' in result.stdout
    assert not (tmp_path / "mqar").exists()


def test_dry_run_says_what_a_run_would_do_with_each_case(tmp_path):
    """Done rows are left, an error row reruns only with --retry-errors, a kept state is continued; nothing written."""
    args = ["mqar", *TINY, "--mixers", "rebased", "--seeds", "0..3:+1", "--out", tmp_path, "--dry-run", "--format", "json"]
    ids = [case["case_id"] for case in json.loads(invoke(*args).stdout)]
    (tmp_path / "mqar").mkdir()
    for case_id, status in zip(ids, ("ok", "error")):
        pd.DataFrame({"kind": ["mqar"], "case_id": [case_id], "status": [status]}).to_parquet(
            tmp_path / "mqar" / f"{case_id}.parquet")
    (tmp_path / "state" / "mqar").mkdir(parents=True)
    torch.save({"epoch": 3}, tmp_path / "state" / "mqar" / f"{ids[2]}.pt")
    files = sorted(tmp_path.rglob("*"))
    plans = {case["case_id"]: case["plan"] for case in json.loads(invoke(*args).stdout)}
    assert [plans[i] for i in ids] == ["done", "error row", "continues after epoch 3", "runs"]
    retry = {case["case_id"]: case["plan"] for case in json.loads(invoke(*args, "--retry-errors").stdout)}
    assert retry[ids[1]] == "runs"
    assert sorted(tmp_path.rglob("*")) == files


def test_schedule_epochs_is_named_only_when_given(tmp_path):
    """Rows from before --schedule-epochs existed keep their case ids: an unset period is not in the config."""
    suite = ["--suite", "mqar-paper", "--mixers", "rebased"]  # a suite that leaves the period unset
    plain = invoke("mqar", *suite, *TINY, "--dry-run", "--format", "json", "--out", tmp_path)
    paper = invoke("mqar", *suite, *TINY, "--schedule-epochs", "64", "--dry-run", "--format", "json", "--out", tmp_path)
    assert "schedule_epochs" not in plain.stdout and '"schedule_epochs": 64' in paper.stdout
    assert json.loads(plain.stdout)[0]["case_id"] != json.loads(paper.stdout)[0]["case_id"]


@pytest.mark.parametrize("args, message", [
    (["--seq-lens", "256..64"], "empty range"),
    (["--seq-lens", "6x4"], "not an integer"),
    (["--mixers", "transformer"], "unknown mixer"),
    (["--suite", "no-such-suite"], "unknown suite"),
    (["--seq-lens", "32", "--num-kv-pairs", "16"], "4 * num_kv_pairs"),
    (["--device", "tpu"], "--device"),
    (["--schedule-epochs", "0"], "schedule_epochs: expected a 64-bit integer >= 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path):
    result = invoke("mqar", *args, "--out", tmp_path, "--dry-run")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_exit_code_2(tmp_path):
    result = invoke("mqar", *TINY, "--device", "cuda", "--out", tmp_path)
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr


def test_unwritable_out_is_exit_code_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("mqar", "--mixers", "attention", *TINY, "--out", blocker)
    assert result.exit_code == 2 and "cannot write" in result.stderr


def test_ls_show_and_version(tmp_path):
    listing = invoke("ls")
    assert listing.exit_code == 0
    for name in ("mqar-quick", "mqar-gpu", "mqar-paper"):
        assert name in listing.stdout
    assert invoke("mqar", "--mixers", "attention", *TINY, "--out", tmp_path).exit_code == 0
    shown = invoke("show", tmp_path / "mqar")
    assert shown.exit_code == 0 and "attention" in shown.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("show", empty).exit_code == 2
    version = invoke("--version")
    assert version.exit_code == 0 and __version__ in version.stdout
