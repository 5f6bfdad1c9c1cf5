"""Hostile input and faults on tiny CPU cases: bad flags and suites, broken user mixers, rows that cannot be
written, a full disk, corrupt files, diverging runs, signals (SIGINT, SIGTERM, SIGKILL) and two sweeps sharing
one results folder. Each ends in one line or an error row, never a traceback, a lost or duplicated row, or a
temporary file."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rebased_bench import claims as claims_module
from rebased_bench import interrupts
from rebased_bench.checkpoints import UnreadableFile
from rebased_bench.cli import app
from rebased_bench.cli.shared import MAX_CASES
from rebased_bench.config import Config, case_id
from rebased_bench.files import HOST, remove_stale_temp_files, write_atomic
from rebased_bench.kinds.iou import IouCase, trained_model
from rebased_bench.models.checks import MixerCheckError, check_mixers
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.registry import MIXERS
from rebased_bench.runner import SuiteKind, run_sweep
from rebased_bench.store import Store, read_rows
from rebased_bench.suite import load_suite, suite_files

TINY = ["--d-models", "16", "--seq-lens", "32", "--epochs", "1", "--train-examples", "64", "--test-examples", "16",
        "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu"]
# Eight cases of a fraction of a second each: a sweep long enough to be cut at any point.
SWEEP = """
kind = "mqar"
[grid]
mixer = ["rebased"]
d_model = [16]
seq_len = [32]
lr = [1e-2]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
[fixed]
num_kv_pairs = 4
vocab_size = 64
epochs = 2
train_examples = 64
test_examples = 16
batch_size = 16
"""
HINT = "interrupted: finished rows are kept; rerun the same command to resume"


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


def temp_files(folder: Path) -> list:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


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
    _, path = trained_model(case, "rebased", torch.device("cpu"))
    checkpoint = Path(path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # torn
    with pytest.raises(UnreadableFile, match=rf"checkpoint {checkpoint} is unreadable \(.*\); moved to "
                                             rf"{checkpoint}.unreadable, the next run trains it again"):
        trained_model(case, "rebased", torch.device("cpu"))
    assert not checkpoint.exists()
    model, _ = trained_model(case, "rebased", torch.device("cpu"))  # trained again
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

@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    x: int


def _toy_case(case, device, state_path=None):
    if case.x == 2:
        return {"y": 2 ** 70}  # beyond the int64 column
    if case.x == 5:
        os.kill(os.getpid(), signal.SIGTERM)  # as if sent from outside while the case runs
    return {"y": case.x}


TOY = SuiteKind("toy", Toy, pa.schema([("y", pa.int64())]), _toy_case)


def _toy_sweep(out, xs):
    return run_sweep(TOY, "toy-suite", [Toy(x=x) for x in xs], Store(out, TOY.name, TOY.schema), torch.device("cpu"))


def test_a_row_its_schema_cannot_hold_becomes_an_error_row(tmp_path):
    report = _toy_sweep(tmp_path, [1, 2, 3])
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


# --- signals ------------------------------------------------------------------------------------------------------

def test_a_signal_during_a_write_lets_it_finish_then_stops(tmp_path):
    target = tmp_path / "row.bin"

    def write(tmp):
        tmp.write_bytes(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the write
        os.kill(os.getpid(), signal.SIGINT)  # and again: ignored
        with open(tmp, "ab") as file:
            file.write(b"second half")

    with pytest.raises(interrupts.Interrupted) as stopped, interrupts.handling():
        write_atomic(target, write)
    assert stopped.value.exit_code == 130
    assert target.read_bytes() == b"first half second half" and not temp_files(tmp_path)


def test_sigterm_in_a_case_keeps_the_finished_rows(tmp_path):
    report = _toy_sweep(tmp_path, [1, 3, 5, 6])
    assert report.interrupted_by == signal.SIGTERM and report.ok == 2
    assert sorted(read_rows(tmp_path / "toy")["x"]) == [1, 3] and not temp_files(tmp_path)
    assert not list((tmp_path / "claims").rglob("*.claim"))


def _sweep_command(suite: Path, out: Path) -> list:
    return [sys.executable, "-m", "rebased_bench", "mqar", "--suite", str(suite), "--device", "cpu", "--out", str(out)]


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread a process: two sweeps share the cores


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_loads_ends_it_quietly(signum, tmp_path):
    command = subprocess.Popen(_sweep_command(tmp_path / "none.toml", tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=_environment())
    time.sleep(0.3)  # importing torch
    command.send_signal(signum)
    command.send_signal(signum)
    stderr = command.communicate(timeout=60)[1]
    assert command.returncode == 128 + signum and "Traceback" not in stderr, stderr


def _rows(out: Path) -> pd.DataFrame:
    return read_rows(out / "mqar") if (out / "mqar").exists() else pd.DataFrame({"case_id": []})


def test_signals_and_kills_at_any_moment_lose_no_row_and_run_no_case_twice(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP)
    kept = {}  # case id -> started_at of every row seen so far: a row once written never changes
    for attempt, signals in enumerate([[signal.SIGINT] * 3, [signal.SIGTERM], [signal.SIGKILL]]):
        sweep = subprocess.Popen(_sweep_command(suite, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=_environment())
        deadline = time.monotonic() + 120
        while len(_rows(out)) <= len(kept) and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # until this run has written a row of its own
        time.sleep(0.05 * attempt)  # then somewhere in a later case: training, its state, its row
        for signum in signals:
            sweep.send_signal(signum)
            time.sleep(0.01)
        stderr = sweep.communicate(timeout=120)[1]
        assert "Traceback" not in stderr, stderr
        if signals[0] != signal.SIGKILL:
            assert sweep.returncode == 128 + signals[0] and HINT in stderr, stderr
            assert not temp_files(out) and not list((out / "claims").rglob("*.claim"))
        rows = _rows(out)
        assert rows["case_id"].is_unique and len(rows) < 8
        for row in rows.itertuples():
            assert kept.setdefault(row.case_id, row.started_at) == row.started_at
        kept = dict(zip(rows["case_id"], rows["started_at"]))
    final = subprocess.run(_sweep_command(suite, out), capture_output=True, text=True, env=_environment(), timeout=300)
    assert final.returncode == 0, final.stderr
    rows = _rows(out)
    assert len(rows) == 8 and rows["case_id"].is_unique and set(rows["status"]) == {"ok"}
    assert all(rows.set_index("case_id").loc[list(kept), "started_at"] == pd.Series(kept))
    assert not temp_files(out) and not list((out / "claims").rglob("*.claim"))
    assert not list((out / "state").rglob("*.pt"))


# --- claims: sweeps sharing one folder ------------------------------------------------------------------------------

def test_two_sweeps_on_one_folder_run_each_case_once(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP)
    sweeps = [subprocess.Popen(_sweep_command(suite, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=_environment()) for _ in range(2)]
    stderrs = [sweep.communicate(timeout=300)[1] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], stderrs
    ran = [int(re.search(r"ran (\d+) \(", stderr).group(1)) for stderr in stderrs]
    assert sum(ran) == 8 and min(ran) > 0, stderrs  # split between them, none twice
    rows = _rows(out)
    assert len(rows) == 8 and set(rows["status"]) == {"ok"}
    assert any("being run by another process" in stderr or "already done" in stderr for stderr in stderrs)
    assert not list((out / "claims").rglob("*.claim")) and not temp_files(out)


def _claim(folder: Path, case: str, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case}.claim").write_text(json.dumps({"host": HOST, "pid": os.getpid(), "heartbeat": time.time(),
                                                       **fields}))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_claim_is_taken_over_only_when_its_owner_is_gone(tmp_path):
    folder = tmp_path / "claims"
    _claim(folder, "live", pid=os.getppid())  # a running process of this machine
    _claim(folder, "dead", pid=_dead_pid())  # ended: killed while it ran the case
    _claim(folder, "far", host="another-machine", pid=1)  # another machine, heartbeat fresh
    _claim(folder, "silent", host="another-machine", pid=1, heartbeat=time.time() - claims_module.STALE_SECONDS - 1)
    (folder / "torn.claim").write_text('{"host": ')  # being written right now
    with claims_module.Claims(folder) as claims:
        taken = {case: claims.take(case) for case in ("live", "dead", "far", "silent", "torn", "new")}
        assert taken == {"live": False, "dead": True, "far": False, "silent": True, "torn": False, "new": True}
        assert json.loads((folder / "dead.claim").read_text())["pid"] == os.getpid()
        assert not claims_module.Claims(folder).take("new")  # held by this process: another sweep keeps off
    assert sorted(p.stem for p in folder.glob("*.claim")) == ["far", "live", "torn"]  # its own ones released
    assert not temp_files(folder)


def test_the_heartbeat_keeps_a_claim_fresh_and_lets_go_of_one_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(claims_module, "HEARTBEAT_SECONDS", 0.05)
    with claims_module.Claims(tmp_path) as claims:
        assert claims.take("mine") and claims.take("lost")
        started = json.loads((tmp_path / "mine.claim").read_text())["heartbeat"]
        with claims.lock:  # not in the middle of a refresh
            _claim(tmp_path, "lost", host="another-machine", pid=1)  # taken over while this process stalled
        deadline = time.monotonic() + 10
        while (json.loads((tmp_path / "mine.claim").read_text())["heartbeat"] == started or "lost" in claims.held) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "lost" not in claims.held and "mine" in claims.held
    assert sorted(p.stem for p in tmp_path.glob("*.claim")) == ["lost"]  # the other owner's claim stays


def test_a_case_claimed_elsewhere_is_skipped_and_reported(tmp_path):
    _claim(tmp_path / "claims" / "toy", case_id({"x": 3}), pid=os.getppid())
    report = _toy_sweep(tmp_path, [1, 3])
    assert (report.ok, report.elsewhere) == (1, 1) and list(read_rows(tmp_path / "toy")["x"]) == [1]


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = tmp_path / "mqar" / f".abc.parquet~{HOST}~{_dead_pid()}.tmp"
    live = tmp_path / "mqar" / f".def.parquet~{HOST}~{os.getpid()}.tmp"
    far = tmp_path / "checkpoints" / "mqar" / ".ghi.pt~another-machine~1.tmp"
    for path in (dead, live, far):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    Store(tmp_path, "mqar", TOY.schema)
    assert not dead.exists() and live.exists() and far.exists()
    os.utime(far, (0, 0))  # an hour old and more: abandoned
    remove_stale_temp_files(tmp_path)
    assert not far.exists()
