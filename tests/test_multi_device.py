"""One command over several devices: a worker process per device on one --out, one progress display, resumable.

On the CPU, `--device cpu,cpu` runs two workers, as `--device cuda:all` runs one per GPU.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.runner import run_sweep
from rebased_bench.store import Store

from sweep_helpers import HINT, SWEEP, TOY, Toy, environment, sweep_rows, temp_files, toy_sweep

FINISHED = re.compile(r"^\[\d+/\d+\] (\w+) .*\b(ok|error) ", re.MULTILINE)  # a case a worker ran, in its log


def command(suite: Path, out: Path, device: str, *flags) -> list:
    return [sys.executable, "-m", "rebased_bench", "mqar", "--suite", str(suite), "--device", device,
            "--out", str(out), *flags]


def runs_per_case(out: Path) -> pd.Series:
    """How many times the workers' logs say each case ran to its row."""
    logs = "".join(log.read_text() for log in (out / "logs" / "mqar").glob("worker*.log"))
    return pd.Series([case_id for case_id, _ in FINISHED.findall(logs)], dtype=str).value_counts()


def clear_logs(out: Path):
    for log in (out / "logs" / "mqar").glob("worker*.log"):
        log.unlink()


def wait_for(condition, process: subprocess.Popen, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), "the sweep ended before it got there"


def test_two_workers_run_each_case_once_and_a_rerun_runs_nothing(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP)
    first = subprocess.run(command(suite, out, "cpu,cpu"), capture_output=True, text=True, env=environment(),
                           timeout=300)
    assert first.returncode == 0, first.stderr
    assert "2 workers share the sweep" in first.stderr and "ran 8 (0 errors)" in first.stderr, first.stderr
    assert len(re.findall(r"^\[\d/8\] \w+ .* ok accuracy [\d.]+ on cpu", first.stderr, re.MULTILINE)) == 8
    rows = sweep_rows(out)
    assert len(rows) == 8 and rows["case_id"].is_unique and set(rows["status"]) == {"ok"}
    assert rows["accuracy"].notna().all() and (rows["epochs"] == 2).all()
    ran = runs_per_case(out)
    assert sorted(ran.index) == sorted(rows["case_id"]) and set(ran) == {1}, ran
    assert not list((out / "claims").rglob("*.claim")) and not temp_files(out)

    again = subprocess.run(command(suite, out, "cpu,cpu"), capture_output=True, text=True, env=environment(),
                           timeout=300)
    assert again.returncode == 0 and "8 of 8 cases already done" in again.stderr, again.stderr
    assert "workers share" not in again.stderr  # nothing to do: no worker started
    assert sweep_rows(out).set_index("case_id")["started_at"].equals(rows.set_index("case_id")["started_at"])


def test_a_row_another_worker_wrote_since_the_sweep_began_counts_as_done(tmp_path):
    since = time.time()  # the launcher's start, which its workers get
    time.sleep(0.05)  # a file's time can trail the clock by a tick
    toy_sweep(tmp_path, [0, 1])  # as if by one worker, before another began
    store = Store(tmp_path, TOY.name, TOY.schema)
    worker = run_sweep(TOY, "toy-suite", [Toy(x=0), Toy(x=1)], store, torch.device("cpu"), force=True, since=since)
    assert (worker.skipped, worker.ok) == (2, 0)  # --force reruns each case once, not once per worker
    alone = run_sweep(TOY, "toy-suite", [Toy(x=0), Toy(x=1)], store, torch.device("cpu"), force=True)
    assert (alone.skipped, alone.ok) == (0, 2)


def claim_owners(claims: Path) -> list[int]:
    """The pids of the claims in `claims` (a claim released meanwhile is left out)."""
    owners = []
    for claim in claims.glob("*.claim"):
        try:
            owners.append(json.loads(claim.read_text())["pid"])
        except (FileNotFoundError, ValueError):
            continue
    return owners


def test_a_stopped_or_killed_launcher_resumes_with_every_case_once(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP.replace("train_examples = 64", "train_examples = 500"))  # about half a second a case
    claims = out / "claims" / "mqar"
    # A worker killed: the launcher says so. Then SIGTERM to the launcher alone: it stops the other worker, keeps
    # the rows, exits 143.
    said = tmp_path / "launcher.err"
    with open(said, "w") as stderr:
        launcher = subprocess.Popen(command(suite, out, "cpu,cpu"), stdout=subprocess.DEVNULL, stderr=stderr,
                                    text=True, env=environment())
    wait_for(lambda: len(sweep_rows(out)) >= 1 and claim_owners(claims), launcher)
    dead = claim_owners(claims)[0]
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: "was killed" in said.read_text(), launcher)
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(timeout=120)
    text = said.read_text()
    assert launcher.returncode == 143 and HINT in text and "Traceback" not in text, text
    assert re.search(r"^error: worker \d \(cpu\) was killed by SIGKILL; its log: .*worker\d\.log", text, re.MULTILINE)
    logs = "".join(log.read_text() for log in (out / "logs" / "mqar").glob("worker*.log"))
    assert logs.count(HINT) == 1, logs  # the worker left got the signal and ended as a stopped sweep does
    assert set(claim_owners(claims)) <= {dead} and not temp_files(out)  # but the dead worker's claim, none stays
    kept = sweep_rows(out).set_index("case_id")["started_at"]
    assert 1 <= len(kept) < 8

    # SIGKILL to the launcher and its workers at once: their claims stay behind, their owners gone
    launcher = subprocess.Popen(command(suite, out, "cpu,cpu"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=environment(), start_new_session=True)
    wait_for(lambda: len(sweep_rows(out)) > len(kept), launcher)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    kept = sweep_rows(out).set_index("case_id")["started_at"]

    clear_logs(out)
    final = subprocess.run(command(suite, out, "cpu,cpu"), capture_output=True, text=True, env=environment(),
                           timeout=300)
    assert final.returncode == 0, final.stderr
    rows = sweep_rows(out)
    assert len(rows) == 8 and rows["case_id"].is_unique and set(rows["status"]) == {"ok"}
    assert rows.set_index("case_id").loc[kept.index, "started_at"].equals(kept)  # finished rows are kept
    ran = runs_per_case(out)
    assert set(ran) == {1} and sorted(ran.index) == sorted(set(rows["case_id"]) - set(kept.index)), ran
    assert not list(claims.glob("*.claim")) and not list((out / "state").rglob("*.pt"))


@pytest.mark.parametrize("device, message", [
    ("cpu,cuda:0", "error: --device cpu,cuda:0: the devices of one sweep are all cpu or all cuda:N"),
    ("cpu,,cpu", "error: --device: 'cpu,,cpu' is not auto, cpu, cuda, cuda:N, cuda:all or a comma list of them"),
])
def test_bad_device_lists_are_one_line(device, message, tmp_path):
    result = CliRunner().invoke(app, ["mqar", "--device", device, "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.strip() == message, result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_all_gpus_without_cuda_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["mqar", "--device", "cuda:all", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "error: --device cuda:all: no CUDA GPU is available on this machine"
    ray = CliRunner().invoke(app, ["mqar", "--device", "cuda:all", "--executor", "ray", "--out", str(tmp_path)])
    assert ray.exit_code == 2 and len(ray.stderr.strip().splitlines()) == 1 and "--executor ray" in ray.stderr
    planned = CliRunner().invoke(app, ["mqar", "--device", "cuda:all", "--dry-run", "--out", str(tmp_path)])
    assert planned.exit_code == 0 and "mqar-gpu: 15 cases" in planned.stdout, planned.output  # planned for CUDA


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_all_gpus_run_one_worker_each(tmp_path):
    suite, out = tmp_path / "sweep.toml", tmp_path / "out"
    suite.write_text(SWEEP.replace("seed = [0, 1, 2, 3, 4, 5, 6, 7]", "seed = [0, 1]"))
    result = subprocess.run(command(suite, out, "cuda:all"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{torch.cuda.device_count()} workers share the sweep" in result.stderr, result.stderr
    rows = sweep_rows(out)
    assert len(rows) == 2 and set(rows["status"]) == {"ok"} and set(runs_per_case(out)) == {1}
    assert rows["device"].str.fullmatch(r"cuda:\d+").all() and (rows["gpu_name"] != "").all()
