"""What the fault and interrupt tests share: a sweep of eight tiny MQAR cases long enough to be cut at any point,
a toy kind whose cases fail or signal on cue, and the checks that nothing of a write is left behind."""

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch

from rebased_bench.config import Config
from rebased_bench.runner import SuiteKind, run_sweep
from rebased_bench.store import Store, read_rows

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


def temp_files(folder: Path) -> list:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@dataclass(frozen=True, kw_only=True)
class Toy(Config):
    x: int


def toy_case(case, device, state_path=None):
    if case.x == 2:
        return {"y": 2 ** 70}  # beyond the int64 column
    if case.x == 5:
        os.kill(os.getpid(), signal.SIGTERM)  # as if sent from outside while the case runs
    return {"y": case.x}


TOY = SuiteKind("toy", Toy, pa.schema([("y", pa.int64())]), toy_case)


def toy_sweep(out, xs):
    return run_sweep(TOY, "toy-suite", [Toy(x=x) for x in xs], Store(out, TOY.name, TOY.schema), torch.device("cpu"))


def sweep_command(suite: Path, out: Path) -> list:
    return [sys.executable, "-m", "rebased_bench", "mqar", "--suite", str(suite), "--device", "cpu", "--out", str(out)]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread a process: two sweeps share the cores


def sweep_rows(out: Path) -> pd.DataFrame:
    return read_rows(out / "mqar") if (out / "mqar").exists() else pd.DataFrame({"case_id": []})
