"""A sweep killed in the middle of a case continues from that case's last finished epoch when rerun."""

import json
import os
import signal
import subprocess
import time

import pandas as pd

from sweep_helpers import sweep_command

SUITE = """
kind = "mqar"
description = "one small case, several seconds an epoch on a CPU"
[grid]
mixer = ["rebased"]
d_model = [16]
seq_len = [32]
lr = [1e-2]
seed = [0]
[fixed]
num_kv_pairs = 4
vocab_size = 64
epochs = 4
train_examples = 3000
test_examples = 64
batch_size = 16
"""


def test_sigkill_after_an_epoch_then_rerun_gives_the_uninterrupted_history(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    whole = subprocess.run(sweep_command(suite, tmp_path / "whole"), capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr

    killed = subprocess.Popen(sweep_command(suite, tmp_path / "killed"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    states = tmp_path / "killed" / "state" / "mqar"
    deadline = time.monotonic() + 300
    while not any(states.glob("*.pt")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # right after the first epoch's state is written
    killed.wait()
    assert killed.returncode == -signal.SIGKILL and any(states.glob("*.pt"))
    assert not any((tmp_path / "killed" / "mqar").glob("*.parquet"))

    dry = subprocess.run([*sweep_command(suite, tmp_path / "killed"), "--dry-run", "--format", "json"],
                         capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr
    rerun = subprocess.run(sweep_command(suite, tmp_path / "killed"), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    expected = pd.read_parquet(tmp_path / "whole" / "mqar").iloc[0]
    resumed = pd.read_parquet(tmp_path / "killed" / "mqar").iloc[0]
    assert expected["resumed_from_epoch"] == 0 and 1 <= resumed["resumed_from_epoch"] < 4
    assert list(resumed["accuracy_history"]) == list(expected["accuracy_history"])
    assert list(resumed["loss_history"]) == list(expected["loss_history"])
    # the dry run before the rerun said what the rerun did
    assert json.loads(dry.stdout)[0]["plan"] == f"continues after epoch {resumed['resumed_from_epoch']}"
    assert not any(states.glob("*"))  # the state goes once the row is written
