"""Hostile input and faults on tiny CPU cases: bad flags and suites, broken user mixers, rows that cannot be
written, a full disk, corrupt files, diverging runs. Each ends in one line or an error row, never a traceback, a
lost row, or a temporary file. Signals and shared folders: test_interrupts.py."""

import errno
import json
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rebased_bench.checkpoints import UnreadableFile
from rebased_bench.cli import app
from rebased_bench.cli.shared import MAX_CASES
from rebased_bench.config import case_id
from rebased_bench.kinds.iou import IouCase, trained_model
from rebased_bench.models.checks import MixerCheckError, check_mixers
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.registry import MIXERS
from rebased_bench.runner import run_sweep
from rebased_bench.store import Store, read_rows
from rebased_bench.suite import load_suite, suite_files
from sweep_helpers import SWEEP, TOY, Toy, temp_files, toy_sweep

TINY = ["--d-models", "16", "--seq-lens", "32", "--epochs", "1", "--train-examples", "64", "--test-examples", "16",
        "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy machine the threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, code=2) -> str:
    """The one `error: ...` line of a command that failed with `code`: all it printed for bad input (2), beside a
    sweep's progress for a sweep stopped on the way (1)."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in result.output and len(errors) == 1, result.stderr
    assert code != 2 or len(result.stderr.strip().splitlines()) == 1, result.stderr
    return errors[0]


# --- user mixers, imported by the CLI as test_faults:Name ------------------------------------------------------

class _Linear(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)


class NaNMixer(_Linear):
    def forward(self, x):
        return self.proj(x) * float("nan")


class LookAheadMixer(_Linear):
    """Adds the mean over the whole sequence: every position sees the future."""

    def forward(self, x):
        return self.proj(x) + x.mean(1, keepdim=True)

    def attention_map(self, x):
        batch, seq_len, _ = x.shape
        return torch.full((batch, seq_len, seq_len), 1.0 / seq_len)


class WrongShapeMixer(_Linear):
    def forward(self, x):
        return self.proj(x)[:, :1]  # (batch, 1, d_model): the residual add would broadcast it silently


class NaNWhenTrainingMixer(_Linear):
    """Passes the check (eval mode), then every training step is NaN."""

    def forward(self, x):
        return self.proj(x) * (float("nan") if self.training else 1.0)


class DivergesInEpochTwo(_Linear):
    """Finite for the first epoch's 4 training steps (64 examples, batch 16), then infinite."""

    steps = 0

    def forward(self, x):
        if self.training:
            type(self).steps += 1
        return self.proj(x) * (float("inf") if type(self).steps > 4 else 1.0)


class ExplodingMixer(nn.Module):
    def __init__(self, d_model):
        raise ValueError("this mixer cannot be built")

    def attention_map(self, x):
        return x


# --- bad input: one line, exit code 2, before anything runs -----------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--seq-lens", "32..1000000000:+1"], "has more than 10000 values"),
    (["--lrs", "1e-3..inf"], "a range needs finite bounds"),
    (["--lrs", "1e-9..1:+1e-15"], "has more than 10000 values"),
    (["--lrs", "1e20..1e21:+1"], "has more than 10000 values"),  # a step too small to move the value
    (["--lrs", "1e-3..1:+inf"], "step must be positive and finite"),
    # mqar-quick's 3 mixers x 301 seeds x 1000 lrs
    (["--seeds", "0..300:+1", "--lrs", "1e-3..1:+1e-3"], "the grid has 903000 cases, more than --max-cases 10000"),
    (["--lrs", "nan"], "lr: expected a finite number > 0, got nan"),
    (["--lrs", "inf"], "lr: expected a finite number > 0, got inf"),
    (["--lrs", "0"], "lr: expected a finite number > 0, got 0.0"),
    (["--lrs", "-1e-3"], "lr: expected a finite number > 0, got -0.001"),
    (["--epochs", str(2 ** 63)], "epochs: expected a 64-bit integer >= 1"),
    (["--seeds", "-1"], "seed: expected a 64-bit integer >= 0"),
    (["--mixers", ":"], "':' is not module:Class"),
    (["--mixers", "test_faults:"], "is not module:Class"),
    (["--mixers", "broken_mixer:Mixer"], "cannot import mixer 'broken_mixer:Mixer': SyntaxError"),
    (["--mixers", "raising_mixer:Mixer"], "cannot import mixer 'raising_mixer:Mixer': RuntimeError: no GPU here"),
])
def test_bad_input_is_one_line_before_anything_runs(args, message, tmp_path, monkeypatch):
    (tmp_path / "broken_mixer.py").write_text("class Mixer(:\n    pass\n")
    (tmp_path / "raising_mixer.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    start = time.perf_counter()
    result = invoke("mqar", *TINY, *args, "--out", tmp_path / "out")
    assert message in one_line_error(result)
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()


def test_a_grid_past_max_cases_runs_when_asked(tmp_path):
    args = ["mqar", *TINY, "--mixers", "rebased", "--seeds", "0..11:+1", "--dry-run", "--format", "json",
            "--out", tmp_path]
    assert "more than --max-cases 10" in one_line_error(invoke(*args, "--max-cases", "10"))
    result = invoke(*args, "--max-cases", "12")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 12


def test_every_built_in_suite_fits_the_default_max_cases():
    for name in suite_files():
        assert load_suite(name).size() <= MAX_CASES, name


def test_bad_learning_rates_in_a_suite_file(tmp_path):
    for value in ("nan", "inf", "0.0", "-1e-3"):
        suite = tmp_path / "bad.toml"
        suite.write_text(SWEEP.replace("lr = [1e-2]", f"lr = [{value}]"))
        assert f"{suite}: lr: expected a finite number > 0" in one_line_error(
            invoke("mqar", "--suite", suite, "--dry-run", "--out", tmp_path))


def test_kernel_shapes_beyond_the_int64_tokens_column(tmp_path):
    result = invoke("kernels", "--providers", "chunk", "--seq-lens", 2 ** 62, "--batch", 4, "--device", "cpu",
                    "--out", tmp_path)
    assert "batch x seq_len = 18446744073709551616 is beyond a 64-bit integer" in one_line_error(result)


def test_iou_with_a_mixer_that_raises_in_its_constructor(tmp_path):
    result = invoke("iou", *TINY, "--mixers", "test_faults:ExplodingMixer", "--out", tmp_path)
    assert "'test_faults:ExplodingMixer' cannot be built: ValueError: this mixer cannot be built" in \
        one_line_error(result)


# --- mixer checks and divergence: the case's error row, the sweep goes on ---------------------------------------

@pytest.mark.parametrize("name", sorted(MIXERS))
def test_every_built_in_mixer_passes_the_checks(name):
    torch.manual_seed(0)
    check_mixers(LanguageModel(ModelConfig(name, 16, 32, 64)), torch.device("cpu"))


def test_the_checks_leave_the_training_rng_alone():
    model = LanguageModel(ModelConfig("rebased", 16, 32, 64))
    state = torch.get_rng_state()
    check_mixers(model, torch.device("cpu"))
    assert torch.equal(state, torch.get_rng_state()) and model.training


@pytest.mark.parametrize("mixer, reason", [
    ("NaNMixer", "returns NaN or infinite values on a random batch"),
    ("LookAheadMixer", "looks at future tokens"),
    ("WrongShapeMixer", "returns (2, 1, 16), expected a tensor of shape (2, 32, 16)"),
])
def test_a_mixer_failing_a_check_is_refused_before_training(mixer, reason):
    model = LanguageModel(ModelConfig(f"test_faults:{mixer}", 16, 32, 64))
    with pytest.raises(MixerCheckError, match=re.escape(reason)):
        check_mixers(model, torch.device("cpu"))


def test_failed_checks_and_divergence_are_error_rows_and_the_sweep_goes_on(tmp_path):
    DivergesInEpochTwo.steps = 0
    mixers = ["NaNMixer", "LookAheadMixer", "WrongShapeMixer", "NaNWhenTrainingMixer", "DivergesInEpochTwo"]
    result = invoke("mqar", *TINY, "--epochs", "3", "--mixers", ",".join(f"test_faults:{m}" for m in mixers) +
                    ",rebased", "--out", tmp_path)
    assert result.exit_code == 1, result.output  # the sweep went on; its failed cases set the exit code
    assert result.stderr.strip().splitlines()[-1] == "5 of 6 cases failed (--retry-errors reruns them)"
    rows = read_rows(tmp_path / "mqar").set_index("mixer")
    error = {m.partition(":")[2]: e for m, e in rows["error"].items() if m.startswith("test_faults")}
    assert "MixerCheckError" in error["NaNMixer"] and "NaN or infinite" in error["NaNMixer"]
    assert "looks at future tokens" in error["LookAheadMixer"]
    assert "expected a tensor of shape" in error["WrongShapeMixer"]
    assert error["NaNWhenTrainingMixer"].startswith("Diverged: diverged at epoch 1 ")
    assert error["DivergesInEpochTwo"].startswith("Diverged: diverged at epoch 2 ")
    assert rows.loc["rebased", "status"] == "ok"
    states = {p.stem: torch.load(p, weights_only=True) for p in (tmp_path / "state" / "mqar").glob("*.pt")}
    diverged_late = rows.loc["test_faults:DivergesInEpochTwo", "case_id"]
    assert list(states) == [diverged_late] and states[diverged_late]["epoch"] == 1  # no state of a NaN epoch


def test_iou_never_maps_a_mixer_that_sees_the_future(tmp_path):
    result = invoke("iou", *TINY, "--mixers", "test_faults:LookAheadMixer", "--out", tmp_path)
    assert result.exit_code == 1, result.output
    row = read_rows(tmp_path / "iou").iloc[0]
    assert row["status"] == "error" and "looks at future tokens" in row["error"]
    assert not list(tmp_path.rglob("*.npz")) and not (tmp_path / "figures").exists()


# --- unreadable files: named in the error row, set aside, done again --------------------------------------------

def test_a_corrupt_checkpoint_is_named_and_trained_again(tmp_path):
    case = IouCase.from_flat({"mixer": "rebased", "d_model": 16, "seq_len": 32, "num_kv_pairs": 4, "vocab_size": 64,
                              "lr": 1e-2, "seed": 0, "epochs": 1, "train_examples": 64, "test_examples": 16,
                              "batch_size": 16, "checkpoint_dir": str(tmp_path), "map_dir": str(tmp_path)})
    _, path = trained_model(case.mqar_cases()[0], torch.device("cpu"))
    checkpoint = Path(path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # torn
    with pytest.raises(UnreadableFile, match=rf"checkpoint {checkpoint} is unreadable \(.*\); moved to "
                                             rf"{checkpoint}.unreadable, the next run trains it again"):
        trained_model(case.mqar_cases()[0], torch.device("cpu"))
    assert not checkpoint.exists()
    model, _ = trained_model(case.mqar_cases()[0], torch.device("cpu"))  # trained again
    assert checkpoint.exists() and not model.training


def test_a_corrupt_training_state_is_named_and_the_case_starts_afresh(tmp_path):
    args = ["mqar", *TINY, "--mixers", "rebased", "--out", tmp_path]
    state = tmp_path / "state" / "mqar" / f"{_case_ids(args)[0]}.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a torch file")
    assert invoke(*args).exit_code == 1
    row = read_rows(tmp_path / "mqar").iloc[0]
    assert row["status"] == "error" and f"training state {state} is unreadable" in row["error"]
    assert state.with_name(f"{state.name}.unreadable").exists() and not state.exists()
    assert invoke(*args, "--force").exit_code == 0
    assert read_rows(tmp_path / "mqar").iloc[0]["status"] == "ok"


def _case_ids(args) -> list:
    result = invoke(*args, "--dry-run", "--format", "json")
    return [case["case_id"] for case in json.loads(result.stdout)]


# --- rows that cannot be written, a full disk ---------------------------------------------------------------------

def test_a_row_its_schema_cannot_hold_becomes_an_error_row(tmp_path):
    report = toy_sweep(tmp_path, [1, 2, 3])
    rows = read_rows(tmp_path / "toy").set_index("x")
    assert (report.ok, report.errors) == (2, 1) and rows.loc[3, "y"] == 3
    assert rows.loc[2, "status"] == "error" and rows.loc[2, "error"].startswith("its row cannot be written: ")


def test_a_case_whose_error_row_cannot_be_written_either_is_one_line(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path, TOY.name, TOY.schema)
    write = store.write

    def write_but_case_2(row):
        if row["x"] == 2:
            raise pa.ArrowInvalid("unwritable")
        write(row)

    monkeypatch.setattr(store, "write", write_but_case_2)
    report = run_sweep(TOY, "toy-suite", [Toy(x=x) for x in (1, 2, 3)], store, torch.device("cpu"))
    assert (report.ok, report.errors) == (2, 1)
    assert f"error: case {case_id({'x': 2})}: its row cannot be written: ArrowInvalid: unwritable" in \
        capsys.readouterr().err
    assert sorted(read_rows(tmp_path / "toy")["x"]) == [1, 3] and not temp_files(tmp_path)


def _fill_the_disk(original, picks):
    """A stand-in for torch.save or pq.write_table: for a file `picks` (by its path), half a file, then ENOSPC."""
    def write(obj, target, *args, **kwargs):
        if not picks(target.name if hasattr(target, "write") else str(target)):  # a file object, or a path
            return original(obj, target, *args, **kwargs)
        if hasattr(target, "write"):
            target.write(b"half")
        else:
            Path(target).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


@pytest.mark.parametrize("full", ["row", "checkpoint"])
def test_a_full_disk_stops_the_sweep_with_one_line_and_a_rerun_resumes(full, tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    args = ["mqar", *TINY, "--mixers", "attention,rebased", "--save-checkpoints", "--out", tmp_path]
    ids = _case_ids(args)
    folder, suffix = ("mqar", "parquet") if full == "row" else ("checkpoints/mqar", "pt")
    picks = lambda name: f"{tmp_path}/{folder}/.{ids[1]}.{suffix}~" in name  # noqa: E731  (case 1's temporary file)
    monkeypatch.setattr(pq, "write_table", _fill_the_disk(pq.write_table, picks))
    monkeypatch.setattr(torch, "save", _fill_the_disk(torch.save, picks))
    message = one_line_error(invoke(*args), code=1)
    assert message == (f"error: no space left on device writing {tmp_path}/{folder}/{ids[1]}.{suffix}: rows so far "
                       "are kept; free space and rerun to resume")
    assert set(read_rows(tmp_path / "mqar")["case_id"]) == {ids[0]} and not temp_files(tmp_path)
    assert not list((tmp_path / "claims").rglob("*.claim"))
    monkeypatch.undo()
    assert invoke(*args).exit_code == 0
    assert sorted(read_rows(tmp_path / "mqar")["case_id"]) == sorted(ids)


