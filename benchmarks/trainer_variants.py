"""The variants benchmarks/trainer_step_bench.py times: one line of VARIANTS each.

A variant says how its loss function is built, how the batch is split, which attention path the mixers run on
and what runs before each step; `loop` times the real training loop instead of one step. The losses take
(model, inputs, labels, index) as rebased_bench.training.query_loss does and return a 0-d tensor.
"""

import contextlib
from dataclasses import dataclass
from typing import Callable
from unittest import mock

import torch
import torch.nn.functional as F

from rebased_bench.data.mqar import IGNORE_INDEX
from rebased_bench.kernels.dispatch import NAIVE_OPS, TRITON_OPS
from rebased_bench.kernels.polynomial.fused_chunk import fused_chunk_polynomial
from rebased_bench.kernels.polynomial.quadform import quadform_polynomial
from rebased_bench.kernels.polynomial.quadform_chunk import quadform_chunk_polynomial
from rebased_bench.models.mixers import SCORE_COEFFS
from rebased_bench.training import loss_function, query_logits, query_loss


def eager(device):
    """query_loss as it is: logits at the query positions only."""
    return query_loss


def trainer_compiled(device):
    """The trainer's own compiled loss (loss_function), compiled on any device so the name holds on a CPU too."""
    return loss_function(device, compile=True)


def compiled(mode=None, loss=query_loss):
    """A loss builder: `loss` under torch.compile in `mode`, from a reset as loss_function starts (a previous
    row's graphs would otherwise count against Dynamo's per-function limit)."""
    def build(device):
        torch._dynamo.reset()
        return torch.compile(loss, dynamic=False, mode=mode)
    return build


def full_logits_loss(model, inputs, labels, index=None):
    """The paper's loss: logits over the vocabulary at every position, -100 ignored. inputs, labels: (batch,
    seq_len); index is unused (the paper had none)."""
    logits = model(inputs)  # (batch, seq_len, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


def logits_loss(model, inputs, labels, index):
    """query_loss with the LM head and the cross-entropy apart: the (rows, vocab) logits materialized, as the trainer
    ran before the fused linear cross-entropy."""
    logits, targets = query_logits(model, inputs, labels, index)  # (batch, n, vocab), (batch, n)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def by_score(ops):
    """The mixers' polynomial_attention signature over a table score -> op(q, k, v, scale=, eps=) (the dispatch's
    NAIVE_OPS or TRITON_OPS). q, k: (batch, seq_len, heads, d); v: (..., dv) -> (..., dv)."""
    return lambda q, k, v, score="rebased", scale=None, eps=1e-12: ops[score](q, k, v, scale=scale, eps=eps)


def with_coeffs(op):
    """The same signature over op(q, k, v, coeffs, scale, eps), given the score's coefficients (SCORE_COEFFS)."""
    return lambda q, k, v, score="rebased", scale=None, eps=1e-12: op(q, k, v, SCORE_COEFFS[score], scale, eps)


def attention(op):
    """A context factory: the mixers' polynomial attention swapped for `op` (same signature) while it is open."""
    return lambda: mock.patch("rebased_bench.models.mixers.polynomial_attention", op)


@dataclass(frozen=True)
class Variant:
    """One way to run the trainer's step.

    loss: device -> loss function, built once per row; paper_micro: the paper's micro-batches (256/128/64 at
    seq_len 512/1024/2048 for batch 512) instead of the whole batch; attention: the context the row runs in;
    before_step: called before each step; loop: time `train` itself (its own loss and micro-batch rule).
    """

    doc: str
    loss: Callable = eager
    paper_micro: bool = False
    attention: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    before_step: Callable[[], None] = lambda: None
    loop: bool = False


VARIANTS = {
    "eager_paper": Variant("eager, the paper's micro-batches", paper_micro=True),
    "eager_whole": Variant("eager, the whole batch at once"),
    "compiled": Variant("what the trainer runs on a GPU: its compiled loss, the whole batch", trainer_compiled),
    "compiled_logits": Variant("compiled, logits materialized for the cross-entropy", compiled(loss=logits_loss)),
    "compiled_before": Variant("compiled, the step before the fused loss: logits materialized, parallel kernels",
                               compiled(loss=logits_loss), attention=attention(by_score(TRITON_OPS))),
    "compiled_quadform": Variant("compiled, attention on quadform", trainer_compiled,
                                 attention=attention(with_coeffs(quadform_polynomial))),
    "compiled_fused_chunk": Variant("compiled, attention on the fused chunked kernel (d = 16)", trainer_compiled,
                                    attention=attention(with_coeffs(fused_chunk_polynomial))),
    "compiled_quadform_chunk": Variant("compiled, attention on the chunked quadratic-form kernel", trainer_compiled,
                                       attention=attention(with_coeffs(quadform_chunk_polynomial))),
    "compiled_max_autotune": Variant("compiled with mode max-autotune-no-cudagraphs",
                                     compiled("max-autotune-no-cudagraphs")),
    # CUDA graphs reuse their output buffers: each step is marked as a new one, so the previous step's outputs
    # (which optimizer_step never keeps: it returns a detached loss) may be overwritten
    "compiled_cudagraphs": Variant("compiled with mode reduce-overhead (CUDA graphs)", compiled("reduce-overhead"),
                                   before_step=torch.compiler.cudagraph_mark_step_begin),
    "paper": Variant("the paper's protocol (with fp32): all logits, naive attention, the paper's micro-batches",
                     lambda device: full_logits_loss, paper_micro=True, attention=attention(by_score(NAIVE_OPS))),
    "loop": Variant("the real `train` loop per step: data handling, per-epoch evaluation, host syncs", loop=True),
}
