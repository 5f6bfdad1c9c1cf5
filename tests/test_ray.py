"""The Ray executor on a local Ray on the CPU: the same rows as the local executor, error rows, resume, CLI errors."""

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.config import Config, case_id
from rebased_bench.runner import SuiteKind, run_sweep
from rebased_bench.store import Store, read_rows

# Small enough to train in a second, with a 16-token vocabulary so accuracies differ between cases.
TINY_SUITE = """
kind = "mqar"
description = "4 tiny cases"

[grid]
mixer = ["attention", "rebased"]
d_model = [16]
seq_len = [16]
lr = [3e-3]
seed = [0, 1]

[fixed]
num_kv_pairs = 2
vocab_size = 16
epochs = 2
train_examples = 64
test_examples = 32
batch_size = 16
"""


@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    x: int


def _toy_case(case, device, state_path=None):
    time.sleep(0.1)  # long enough that a Ctrl-C finds cases still queued
    if case.x == 3:
        raise ValueError("three is not allowed")
    if case.x == 4:
        os._exit(1)  # the worker dies, as when the OOM killer or an admin kills it
    if case.x == 9:
        raise KeyboardInterrupt  # Ray reports this task as cancelled, as after `ray job stop`
    return {"y": float(case.x ** 2)}


TOY = SuiteKind("toy-ray", Toy, pa.schema([("y", pa.float64())]), _toy_case)


def _stateful_case(case, device, state_path):
    """Counts its attempts in its state file, as a training case keeps its epochs there; the first is interrupted."""
    attempts = int(state_path.read_text()) + 1 if state_path.exists() else 1
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(str(attempts))
    if attempts == 1:
        raise KeyboardInterrupt  # stopped mid-case, after its state was kept
    return {"y": float(attempts)}


STATEFUL = SuiteKind("toy-ray-state", Toy, pa.schema([("y", pa.float64())]), _stateful_case)


@pytest.fixture(scope="session")
def ray():
    """One local Ray for the whole session: starting it costs seconds."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'rebased-bench[ray]'")
    patch = pytest.MonkeyPatch()
    # Workers unpickle this module's toy kind: they need tests/ on their path (the raylet passes its env on).
    patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
    patch.undo()


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tiny_suite(folder: Path) -> Path:
    """TINY_SUITE as a file: a command that runs by mistake runs for seconds."""
    path = folder / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path


def _toy_sweep(out, xs, executor):
    return run_sweep(TOY, "toy-suite", [Toy(x=x) for x in xs], Store(out, TOY.name, TOY.schema), torch.device("cpu"),
                     executor=executor)


def test_ray_and_local_executors_give_the_same_rows(ray, tmp_path):
    suite = tiny_suite(tmp_path)
    for executor in ("local", "ray"):
        result = invoke("mqar", "--suite", suite, "--device", "cpu", "--out", tmp_path / executor, "--executor", executor)
        assert result.exit_code == 0, result.output
    local, distributed = (pd.read_parquet(tmp_path / e / "mqar").set_index("case_id").sort_index()
                          for e in ("local", "ray"))
    assert len(local) == 4 and list(local.index) == list(distributed.index)
    same = ["mixer", "seed", "status", "accuracy", "final_accuracy", "best_epoch", "epochs_run", "params", "device"]
    pd.testing.assert_frame_equal(local[same], distributed[same])
    assert set(local["status"]) == {"ok"} and local["accuracy"].nunique() > 1  # not equal by all being 0


def test_a_case_that_raises_or_kills_its_worker_is_an_error_row(ray, tmp_path):
    from rebased_bench.ray_executor import ray_executor
    report = _toy_sweep(tmp_path, [1, 2, 3, 4, 5], ray_executor)
    rows = read_rows(tmp_path / TOY.name).set_index("x")
    assert (report.ok, report.errors) == (3, 2), rows["error"].to_dict()
    assert rows.loc[3, "error"] == "ValueError: three is not allowed"
    assert rows.loc[4, "status"] == "error" and "Worker" in rows.loc[4, "error"]
    assert rows.loc[4, "case_id"] == case_id({"x": 4}) and rows.loc[4, "torch_version"] == torch.__version__
    assert rows.loc[5, "y"] == 25.0 and rows.loc[5, "status"] == "ok"


def test_an_interrupted_sweep_resumes_without_duplicated_cases(ray, tmp_path):
    from rebased_bench.ray_executor import ray_executor

    def interrupted_after_two(tasks, run, display):
        rows = ray_executor(tasks, run, display)
        for count, row in enumerate(rows, 1):
            yield row
            if count == 2:
                rows.throw(KeyboardInterrupt)  # Ctrl-C inside the executor: it cancels the rest and re-raises

    xs = [1, 2, 5, 6, 7, 8]
    first = _toy_sweep(tmp_path, xs, interrupted_after_two)
    assert first.interrupted and first.ok == 2
    kept = read_rows(tmp_path / TOY.name)
    second = _toy_sweep(tmp_path, xs, ray_executor)
    assert not second.interrupted and (second.skipped, second.ok) == (2, 4)
    rows = read_rows(tmp_path / TOY.name)
    assert rows["case_id"].is_unique and set(rows["case_id"]) == {case_id({"x": x}) for x in xs}
    resumed = rows.set_index("case_id").loc[kept["case_id"], "started_at"]
    assert list(resumed) == list(kept["started_at"])  # the finished rows were kept, not run again


def test_the_driver_leaves_cases_claimed_by_another_sweep(ray, tmp_path):
    from rebased_bench.files import HOST
    from rebased_bench.ray_executor import ray_executor
    claims = tmp_path / "claims" / TOY.name
    claims.mkdir(parents=True)
    (claims / f"{case_id({'x': 2})}.claim").write_text(
        f'{{"host": "{HOST}", "pid": {os.getppid()}, "heartbeat": {time.time()}}}')  # a live sweep runs x = 2
    report = _toy_sweep(tmp_path, [1, 2, 5], ray_executor)
    assert (report.ok, report.elsewhere) == (2, 1)
    assert sorted(read_rows(tmp_path / TOY.name)["x"]) == [1, 5]
    assert [p.stem for p in claims.glob("*.claim")] == [case_id({"x": 2})]  # its own claims released


def test_a_case_cancelled_from_outside_interrupts_the_sweep_and_stays_to_do(ray, tmp_path):
    from rebased_bench.ray_executor import ray_executor
    report = _toy_sweep(tmp_path, [9], ray_executor)
    assert report.interrupted and report.ok + report.errors == 0
    assert not list((tmp_path / TOY.name).glob("*.parquet"))


def test_a_case_stopped_in_a_worker_continues_from_its_state_under_out(ray, tmp_path):
    from rebased_bench.ray_executor import ray_executor
    store = Store(tmp_path, STATEFUL.name, STATEFUL.schema)
    first = run_sweep(STATEFUL, "s", [Toy(x=1)], store, torch.device("cpu"), executor=ray_executor)
    state = tmp_path / "state" / STATEFUL.name / f"{case_id({'x': 1})}.pt"
    assert first.interrupted and state.read_text() == "1"
    second = run_sweep(STATEFUL, "s", [Toy(x=1)], store, torch.device("cpu"), executor=ray_executor)
    assert second.ok == 1 and read_rows(tmp_path / STATEFUL.name)["y"].tolist() == [2.0]  # the state was read
    assert not state.exists()  # and removed once the row was written


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "no node of the Ray cluster has a GPU"),
    (["--gpus-per-case", "0.25"], "no node of the Ray cluster has that many GPUs"),
    (["--gpus-per-case", "1.5"], "a fraction up to 1, or a whole number"),
])
def test_bad_gpu_requests_are_one_line_and_exit_code_2(ray, args, message, tmp_path):
    result = invoke("mqar", "--suite", tiny_suite(tmp_path), "--executor", "ray", *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_executor_ray_without_ray_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = invoke("mqar", "--suite", tiny_suite(tmp_path), "--executor", "ray", "--out", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --executor ray needs Ray: pip install 'rebased-bench[ray]'"


def test_unreachable_ray_address_is_one_line_and_exit_code_2(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process, even after the session Ray
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address, message in ((f"127.0.0.1:{port}", "no Ray cluster reachable"), ("nohost", "expected auto or HOST:PORT")):
        result = invoke("mqar", "--suite", tiny_suite(tmp_path), "--executor", "ray", "--ray-address", address,
                        "--out", tmp_path)
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_ray_options_need_the_ray_executor(tmp_path):
    result = invoke("mqar", "--gpus-per-case", "0.5", "--dry-run", "--out", tmp_path)
    assert result.exit_code == 2 and "apply to --executor ray" in result.stderr
