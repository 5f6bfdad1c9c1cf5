"""Each training command on a GPU gives ok rows, on the first GPU and on another one (skipped without a GPU)."""

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rebased_bench.cli import app

TINY = ["--d-models", "16", "--seq-lens", "32", "--epochs", "1", "--train-examples", "64", "--test-examples", "16",
        "--batch-size", "16", "--num-kv-pairs", "4", "--seeds", "0"]
# "cuda" as a user types it (the current GPU), then the first two by index.
GPUS = ["cuda", *(f"cuda:{index}" for index in range(min(torch.cuda.device_count(), 2)))] \
    if torch.cuda.is_available() else []


@pytest.mark.skipif(not GPUS, reason="needs a GPU")
@pytest.mark.parametrize("device", GPUS or ["cuda"])
@pytest.mark.parametrize("command", [["mqar", "--mixers", "rebased,based,conv_attention"],
                                     ["ablate", "--variants", "rebased,based"],
                                     ["iou", "--mixers", "rebased"]])
def test_a_training_command_gives_ok_rows_on_a_gpu(tmp_path, command, device):
    result = CliRunner().invoke(app, [*command, *TINY, "--device", device, "--out", str(tmp_path)])
    rows = pd.read_parquet(tmp_path / command[0])
    assert (rows["status"] == "ok").all(), rows[["status", "error"]].to_string()
    assert result.exit_code == 0, result.output
