import math

import pytest
import torch
import torch.nn.functional as F

from rebased_bench.data.mqar import IGNORE_INDEX, generate, query_index
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.training import (TrainConfig, autocast, loss_function, lr_schedule,
                                   micro_batch_size, query_logits, query_loss, train)


def test_query_only_logits_give_the_full_loss_and_accuracy():
    torch.manual_seed(0)
    inputs, labels = generate(8, 64, 16, vocab_size=512, seed=0)
    model = LanguageModel(ModelConfig("rebased", 32, 64, vocab_size=512)).eval()
    full = model(inputs)  # (batch, seq_len, vocab)
    full_loss = F.cross_entropy(full.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    mask = labels != IGNORE_INDEX
    full_hits = (full.argmax(-1)[mask] == labels[mask]).sum()
    logits, targets = query_logits(model, inputs, labels)  # (batch, 16, vocab), (batch, 16)
    torch.testing.assert_close(query_loss(model, inputs, labels), full_loss)
    assert (logits.argmax(-1) == targets).sum() == full_hits


def test_micro_batches_follow_the_paper():
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=512)
    assert [micro_batch_size(config, n) for n in (256, 512, 1024, 2048)] == [512, 256, 128, 64]


@pytest.mark.parametrize("schedule_epochs, factor", [(0, 0.5), (64, 0.5 * (1 + math.cos(math.pi / 64)))])
def test_cosine_period_is_the_run_or_the_papers_64_epochs(schedule_epochs, factor):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.randn(3))], lr=3e-3)
    schedule = lr_schedule(optimizer, TrainConfig(lr=3e-3, epochs=2, batch_size=8, schedule_epochs=schedule_epochs))
    optimizer.step()
    schedule.step()  # after the first of 2 epochs
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * factor)


def test_training_is_seeded_and_reports_best_epoch():
    data = generate(64, 32, 4, vocab_size=256, seed=0), generate(16, 32, 4, vocab_size=256, seed=1)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = LanguageModel(ModelConfig("attention", 16, 32, vocab_size=256))
        results.append(train(model, *data, TrainConfig(lr=3e-3, epochs=2, batch_size=16, micro_batch_size=8),
                             torch.device("cpu")))
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert 1 <= results[0]["best_epoch"] <= results[0]["epochs_run"] == 2
    assert results[0]["accuracy"] >= results[0]["final_accuracy"]


def test_micro_batches_make_the_full_batch_step():
    """One optimizer step over 16 examples: the same whether they go through in one batch or four micro-batches.

    Dropout is off so both see the same function; a step per micro-batch would move the weights 4 times.
    """
    data = generate(16, 32, 4, vocab_size=256, seed=0), generate(8, 32, 4, vocab_size=256, seed=1)
    weights = []
    for micro in (16, 4):
        torch.manual_seed(0)
        model = LanguageModel(ModelConfig("rebased", 32, 32, vocab_size=256, embed_dropout=0.0))
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        train(model, *data, TrainConfig(lr=1e-2, epochs=1, batch_size=16, micro_batch_size=micro), torch.device("cpu"))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.allclose(weights[0], initial)
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=1e-4)  # lr 1e-2: a step moves ~1e-2


def _loss_and_gradients(loss_fn, model, batch):
    loss = loss_fn(model, *batch)
    return [loss, *torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.parametrize("mixer", ["rebased", "based", "conv_attention"])
def test_compiled_loss_gives_the_eager_loss_and_gradients(mixer):
    """The GPU trainer's loss (torch.compile of query_loss) is the eager function: same loss and gradients on a
    fresh random model and batch. Inductor's CPU backend here; the GPU test below checks the CUDA build in bf16."""
    torch.manual_seed(int(torch.randint(1 << 30, ())))  # fresh weights every run
    model = LanguageModel(ModelConfig(mixer, 32, 64, vocab_size=128)).eval()  # eval: no dropout in either
    inputs, labels = generate(4, 64, 8, vocab_size=128, seed=int(torch.randint(1 << 30, ())))
    batch = inputs, labels, query_index(labels)
    eager = _loss_and_gradients(query_loss, model, batch)
    compiled = _loss_and_gradients(loss_function(torch.device("cpu"), compile=True), model, batch)
    assert compiled[0] != eager[0] + 1  # a real number came back
    for name, fast, reference in zip(["loss", *dict(model.named_parameters())], compiled, eager):
        assert_rel_close(name, fast, reference, 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("mixer", ["rebased", "based", "conv_attention"])
def test_compiled_loss_matches_eager_on_the_gpu_in_bf16(mixer):
    device = torch.device("cuda")
    model = LanguageModel(ModelConfig(mixer, 64, 256, vocab_size=512)).to(device).eval()
    inputs, labels = (t.to(device) for t in generate(16, 256, 64, vocab_size=512, seed=int(torch.randint(1 << 30, ()))))
    batch = inputs, labels, query_index(labels)
    with autocast("bf16", device):
        eager = _loss_and_gradients(query_loss, model, batch)
        compiled = _loss_and_gradients(loss_function(device), model, batch)
    for name, fast, reference in zip(["loss", *dict(model.named_parameters())], compiled, eager):
        assert_rel_close(name, fast.float(), reference.float(), 3e-2)


def assert_rel_close(name, actual, expected, tolerance):
    """||actual - expected|| / ||expected|| under `tolerance`; NaN never passes."""
    error = ((actual - expected).norm() / expected.norm().clamp_min(1e-12)).item()
    assert error < tolerance, f"{name}: relative error {error:.2e} >= {tolerance:.0e}"


RESUMABLE_RUN = """
import os, signal, sys, torch
from rebased_bench.data.mqar import generate
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.training import TrainConfig, train
kill_after = int(sys.argv[2])
def on_epoch(progress):
    if progress.epoch == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
torch.manual_seed(0)
model = LanguageModel(ModelConfig("rebased", 16, 32, vocab_size=64))
data = generate(96, 32, 4, vocab_size=64, seed=0), generate(32, 32, 4, vocab_size=64, seed=1)
config = TrainConfig(lr=1e-2, epochs=3, batch_size=16, seed=0)
print(repr(train(model, *data, config, torch.device("cpu"), state_path=sys.argv[1], on_epoch=on_epoch)))
"""


def test_a_run_killed_after_an_epoch_resumes_to_the_same_history(tmp_path):
    """SIGKILL after epoch 1, run again: the state file carries it on to the uninterrupted run's exact history."""
    import subprocess
    import sys

    def run(state, kill_after):
        return subprocess.run([sys.executable, "-c", RESUMABLE_RUN, str(state), str(kill_after)],
                              capture_output=True, text=True, timeout=300)

    whole = run(tmp_path / "whole.pt", 0)
    assert whole.returncode == 0, whole.stderr
    killed = run(tmp_path / "resumed.pt", 1)
    assert killed.returncode == -9 and (tmp_path / "resumed.pt").exists()
    resumed = run(tmp_path / "resumed.pt", 0)
    assert resumed.returncode == 0, resumed.stderr
    whole, resumed = eval(whole.stdout), eval(resumed.stdout)  # noqa: S307 (our own repr of a dict of numbers)
    assert (whole["resumed_from_epoch"], resumed["resumed_from_epoch"]) == (0, 1)
    assert len(resumed["accuracy_history"]) == 3
    assert resumed["accuracy_history"] == whole["accuracy_history"]
    assert resumed["loss_history"] == whole["loss_history"]


def test_the_micro_batch_follows_the_device_unless_set():
    """A CPU cuts the batch to ~256 query rows; a set micro_batch_size is taken as it is; the gradient is the same."""
    from rebased_bench.training import device_micro_batch
    inputs, labels = generate(64, 64, 16, vocab_size=256, seed=0)
    index = query_index(labels)
    model = LanguageModel(ModelConfig("rebased", 16, 64, vocab_size=256))
    for config, expected in [(TrainConfig(lr=1e-3, epochs=1, batch_size=64), 16),
                             (TrainConfig(lr=1e-3, epochs=1, batch_size=64, micro_batch_size=32), 32),
                             (TrainConfig(lr=1e-3, epochs=1, batch_size=8), 8)]:
        assert device_micro_batch(model, query_loss, inputs, labels, index, config) == expected
