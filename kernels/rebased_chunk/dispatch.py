"""`rebased_attention`: the quadratic parallel kernel for short sequences, the chunked one for long ones."""

import torch

from ..polynomial.naive import naive_parallel_rebased
from ..polynomial.parallel import parallel_rebased
from .chunk import chunk_rebased
from .tuned import CHUNK_MIN_SEQ_LEN_FWD, CHUNK_MIN_SEQ_LEN_TRAIN, CHUNK_MIN_WORK  # noqa: F401  (see tuned.py)

# beyond this feature dim the d(d+1)/2 state outgrows the quadratic form's work at any length we run
CHUNK_MAX_D = 32


def use_chunked(seq_len, d, training=False, batch_heads=None):
    """True when rebased_attention takes the chunked kernel on CUDA (training: a backward pass follows).

    From seq_len CHUNK_MIN_SEQ_LEN_* on the chunked kernel wins once it runs at full speed; below
    CHUNK_MIN_WORK of quadratic work (batch * heads * seq_len^2) it sits on its launch floor and loses.
    """
    threshold = CHUNK_MIN_SEQ_LEN_TRAIN if training else CHUNK_MIN_SEQ_LEN_FWD
    enough_work = batch_heads is None or batch_heads * seq_len**2 >= CHUNK_MIN_WORK
    return d <= CHUNK_MAX_D and seq_len >= threshold and enough_work


def rebased_attention(q, k, v, scale=None, eps=1e-12):
    """Causal normalized ReBased attention, parallel or chunked by seq_len (naive PyTorch off CUDA).

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv) in v's dtype.
    The crossover differs with and without a backward pass, so the threshold follows autograd's state.
    """
    if not q.is_cuda:
        return naive_parallel_rebased(q, k, v, scale=scale, eps=eps)
    training = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    if use_chunked(q.shape[1], q.shape[-1], training, q.shape[0] * q.shape[2]):
        return chunk_rebased(q, k, v, scale=scale, eps=eps)[0]
    return parallel_rebased(q, k, v, scale=scale, eps=eps)
