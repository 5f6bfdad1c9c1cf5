"""What a new user meets: device-aware default suites, dry runs that need no device, runs kept apart from the
published results, an estimate before a sweep, progress per epoch, exit codes and --retry-errors."""

import io
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

from rebased_bench import console
from rebased_bench.cli import app
from rebased_bench.estimate import describe, estimate
from rebased_bench.kinds.mqar import MqarCase
from rebased_bench.kinds.kernels import KernelCase

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--d-models", "16", "--seq-lens", "32", "--epochs", "2", "--train-examples", "64", "--test-examples", "16",
        "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu"]


class FlakyMixer(nn.Module):
    """A user mixer that fails while `failing` is set: its case becomes an error row."""

    failing = True

    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):  # (batch, seq_len, d_model)
        if FlakyMixer.failing:
            raise RuntimeError("flaky mixer failed")
        return self.proj(x)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def planned(*args) -> pd.DataFrame:
    result = invoke("mqar", *args, "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    return pd.DataFrame(json.loads(result.stdout))


def test_mqar_plans_the_cpu_suite_on_a_cpu_and_the_gpu_suite_for_cuda(tmp_path):
    cpu = planned("--device", "cpu", "--out", tmp_path)
    assert sorted(cpu["mixer"]) == ["based", "conv_attention", "rebased"] and set(cpu["seq_len"]) == {64}
    gpu = planned("--device", "cuda", "--out", tmp_path)  # a dry run needs no GPU
    assert sorted(set(gpu["mixer"])) == ["based", "conv_attention", "rebased"]
    assert sorted(set(gpu["seq_len"])) == [128, 256, 512, 1024, 2048]
    assert set(gpu["precision"]) == {"bf16"} and set(gpu["micro_batch_size"]) == {0}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_seq_len_flag_gives_one_case_per_point_with_the_papers_pairs(tmp_path, device):
    cases = planned("--seq-lens", "128..2048", "--device", device, "--out", tmp_path)
    point = ["mixer", "d_model", "seq_len", "lr", "seed"]
    assert len(cases) == 15 and not cases.duplicated(point).any()
    assert (cases["num_kv_pairs"] == cases["seq_len"].map(lambda t: 16 if t == 128 else t // 4)).all()


def test_no_default_suite_fixes_a_micro_batch():
    """A micro-batch tuned for one device would leak into runs on another: the defaults leave it to the device."""
    from rebased_bench.suite import load_suite
    for name in ("mqar-quick", "mqar-gpu", "ablate-quick", "iou-quick"):
        assert {case.training.micro_batch_size for case in load_suite(name).configs()} == {0}, name


def test_the_micro_batch_follows_the_device_in_a_run(tmp_path):
    """On a CPU about 256 query rows: 8 pairs a row -> 32 rows of the batch of 64."""
    args = ["--d-models", "16", "--seq-lens", "32", "--epochs", "1", "--train-examples", "64", "--test-examples",
            "16", "--batch-size", "64", "--num-kv-pairs", "8", "--device", "cpu", "--mixers", "rebased"]
    assert invoke("mqar", *args, "--out", tmp_path).exit_code == 0
    assert pd.read_parquet(tmp_path / "mqar")["micro_batch_used"].tolist() == [32]


def test_a_dry_run_for_cuda_says_it_cannot_estimate_without_the_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    result = invoke("mqar", "--device", "cuda", "--dry-run", "--out", tmp_path)
    assert result.exit_code == 0 and "estimate: none, no cuda on this machine" in result.stderr
    assert not tmp_path.joinpath("mqar").exists()


def git_status() -> str | None:
    try:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None  # a copy without git


def test_commands_write_only_into_the_default_runs_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = git_status()
    tiny = [*TINY, "--lrs", "1e-2"]
    assert invoke("mqar", "--mixers", "rebased", *tiny).exit_code == 0
    assert invoke("ablate", "--variants", "x2", *tiny).exit_code == 0
    assert invoke("iou", "--mixers", "rebased", *tiny).exit_code == 0
    assert invoke("plot").exit_code == 0
    for command in (["ls"], ["show", "runs/mqar"], ["mqar", "--dry-run"]):
        assert invoke(*command).exit_code == 0, command
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    assert {p.name for p in (tmp_path / "runs").iterdir()} >= {"mqar", "ablate", "iou", "figures", "checkpoints"}
    assert list((tmp_path / "runs" / "figures").glob("*.png"))
    assert git_status() == before  # nothing written into the checkout


def test_per_epoch_and_per_case_lines_when_stderr_is_not_a_terminal(tmp_path):
    result = invoke("mqar", "--mixers", "rebased,based", *TINY, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("estimate: ~") and "for 2 cases on cpu (2 shapes probed here" in lines[0]
    epochs = [line for line in lines if " epoch " in line]
    assert len(epochs) == 4 and "mixer=rebased epoch 1/2 loss " in epochs[0]
    assert all(" acc " in line and " best " in line for line in epochs)
    assert ", ETA " in epochs[0] and ", ETA " not in epochs[1]  # time left in the case, but after its last epoch
    finished = [line for line in lines if line.startswith("[")]
    assert [line[:5] for line in finished] == ["[1/2]", "[2/2]"] and "ok accuracy" in finished[0]
    rows = pd.read_parquet(tmp_path / "mqar")
    assert rows["loss_history"].map(len).tolist() == rows["accuracy_history"].map(len).tolist() == [2, 2]


def test_the_live_display_on_a_terminal(tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=screen, force_terminal=True, width=160))
    result = invoke("mqar", "--mixers", "rebased", *TINY, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in screen.getvalue() and "1/1 cases" in screen.getvalue()


def test_failed_cases_exit_1_and_retry_errors_reruns_only_them(tmp_path, monkeypatch):
    args = ["mqar", "--mixers", "rebased,test_first_run:FlakyMixer", *TINY, "--out", tmp_path]
    first = invoke(*args)
    assert first.exit_code == 1
    assert first.stderr.strip().splitlines()[-1] == "1 of 2 cases failed (--retry-errors reruns them)"
    kept = pd.read_parquet(tmp_path / "mqar").set_index("mixer")
    again = invoke(*args)  # an error row counts as done
    assert again.exit_code == 1 and "2 of 2 cases already done" in again.stderr
    monkeypatch.setattr(FlakyMixer, "failing", False)
    retried = invoke(*args, "--retry-errors")
    assert retried.exit_code == 0, retried.output
    rows = pd.read_parquet(tmp_path / "mqar").set_index("mixer")
    assert set(rows["status"]) == {"ok"} and "1 of 2 cases already done" in retried.stderr
    assert rows.loc["rebased", "started_at"] == kept.loc["rebased", "started_at"]  # the ok case did not rerun


def test_ls_lists_the_suites_as_json():
    result = invoke("ls", "--format", "json")
    assert result.exit_code == 0
    suites = {suite["name"]: suite for suite in json.loads(result.stdout)}
    assert suites["mqar-gpu"]["kind"] == "mqar" and suites["mqar-gpu"]["cases"] == 15
    assert suites["mqar-quick"]["grid"]["mixer"] == ["conv_attention", "based", "rebased"]
    assert {"description", "fixed"} <= set(suites["kernels-quick"])


def tiny_case(**fields) -> MqarCase:
    return MqarCase.from_flat({"mixer": "rebased", "d_model": 16, "seq_len": 32, "num_kv_pairs": 4,
                               "train_examples": 64, "test_examples": 16, "lr": 1e-2, "seed": 0, "epochs": 2,
                               "batch_size": 16, **fields}).for_device(torch.device("cpu"))


def test_the_estimate_scales_a_probed_rate_and_warns_past_an_hour_on_a_cpu():
    cpu = torch.device("cpu")
    short, long = tiny_case(), tiny_case(train_examples=10 ** 9)
    result = estimate([short, long], cpu, None, probe_seconds=10)
    assert result.probed == 1 and set(result.seconds) == {short.case_id, long.case_id}
    assert result.seconds[long.case_id] > 1000 * result.seconds[short.case_id] > 0
    lines = describe(result)
    assert lines[0].startswith("estimate: ~") and "for 2 cases on cpu" in lines[0]
    assert len(lines) == 2 and "over an hour on this CPU" in lines[1]
    assert estimate([KernelCase(provider="naive", mode="fwd", seq_len=64)], cpu, None, 10) is None


def test_the_estimate_takes_the_rate_of_stored_rows(tmp_path):
    assert invoke("mqar", "--mixers", "rebased", *TINY, "--lrs", "1e-2", "--out", tmp_path).exit_code == 0
    rate = pd.read_parquet(tmp_path / "mqar")["tokens_per_second"].item()
    case = tiny_case(seed=5, train_examples=6400)
    result = estimate([case], torch.device("cpu"), tmp_path, probe_seconds=0)
    assert (result.stored, result.probed) == (1, 0)
    assert result.seconds[case.case_id] == pytest.approx(2 * 6400 * 32 / rate + 1.0)
    assert "rates of 1 shapes from earlier rows" in describe(result)[0]
