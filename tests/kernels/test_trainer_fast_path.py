"""The trainer's GPU path on the CPU: the MQAR model's loss and every parameter gradient through the Triton kernels
(chunked quadratic-form attention, fused linear cross-entropy; on the CPU through TRITON_INTERPRET=1, conftest.py)
against the same model through the naive references (materialized scores and logits), on a fresh random model and
batch."""

from unittest import mock

import pytest
import torch

import kernel_checks

from rebased_bench.data.mqar import generate, query_index
from rebased_bench.kernels import dispatch
from rebased_bench.kernels.linear_ce.linear_ce import linear_cross_entropy as triton_linear_cross_entropy
from rebased_bench.kernels.linear_ce.naive import naive_linear_cross_entropy
from rebased_bench.kernels.polynomial.quadform_chunk import quadform_chunk_polynomial
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.mixers import SCORE_COEFFS
from rebased_bench.training import query_loss

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def triton_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    return quadform_chunk_polynomial(q, k, v, SCORE_COEFFS[score], scale=scale, eps=eps)


def naive_attention(q, k, v, score="rebased", scale=None, eps=1e-12):
    return dispatch.NAIVE_OPS[score](q, k, v, scale=scale, eps=eps)


def loss_and_gradients(model, batch):
    loss = query_loss(model, *batch)
    return [loss, *torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.parametrize("mixer", ["rebased", "based"])
def test_kernels_give_the_reference_loss_and_gradients(mixer):
    seed = int(torch.randint(1 << 30, ()))
    torch.manual_seed(seed)
    model = LanguageModel(ModelConfig(mixer, 24, 40, vocab_size=96)).eval()  # 12 heads of dv 2; no dropout
    inputs, labels = generate(2, 40, 8, vocab_size=96, seed=seed)
    batch = inputs, labels, query_index(labels)
    model.to(DEVICE)
    batch = [x.to(DEVICE) for x in batch]
    with mock.patch("rebased_bench.models.mixers.polynomial_attention", naive_attention), \
            mock.patch("rebased_bench.training.linear_cross_entropy", naive_linear_cross_entropy):
        reference = loss_and_gradients(model, batch)
    with mock.patch("rebased_bench.models.mixers.polynomial_attention", triton_attention), \
            mock.patch("rebased_bench.training.linear_cross_entropy", triton_linear_cross_entropy):
        fast = loss_and_gradients(model, batch)
    tolerance = 3e-3 if DEVICE == "cuda" else 1e-4  # tf32 products on the GPU; exact ones in the interpreter
    for name, a, r in zip(["loss", *dict(model.named_parameters())], fast, reference):
        kernel_checks.assert_rel_close(f"{name} (seed {seed})", a, r.cpu().double(), tolerance, 1e-7)
