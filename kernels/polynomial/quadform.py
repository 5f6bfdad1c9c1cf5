"""Chunked causal polynomial attention in plain PyTorch, for small value heads.

Linear in seq_len. Inside a chunk of C positions the scores are materialized (C x C per head); the keys of earlier
chunks enter through running sums of the polynomial's three terms, read by each query as a quadratic form:

    sum_s p(q.k_s) v_s = c0 sum_s v_s + c1 q^T (sum_s k_s v_s^T) + c2 q^T (sum_s k_s k_s^T (x) v_s) q

The last state is d x d x dv per head: with the MQAR model's value heads of 5 or 10 it is smaller than the
136 x dv feature state of a ReBased chunked kernel, and reading it needs no d^2 feature expansion of q. v gets a
column of ones so the same sums give the denominator. No custom kernel: plain tensor ops, which inside the
trainer's compiled loss Inductor can fuse (the kernels suite times it eagerly).
"""

import torch

from .naive import BASED_COEFFS, REBASED_COEFFS

CHUNK_SIZE = 64


def quadform_polynomial(q, k, v, coeffs, scale=None, eps=1e-12, chunk_size=CHUNK_SIZE):
    """o_t = sum_{s<=t} p(q_t.k_s) v_s / (sum_{s<=t} p(q_t.k_s) + eps), p(s) = c0 + c1 s + c2 s^2, chunked.

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv) in v's dtype.
    Computed in fp32 (autocast off), as naive_parallel_polynomial.
    """
    c0, c1, c2 = coeffs
    batch, seq_len, heads, d = q.shape
    dv = v.shape[-1]
    scale = d ** -0.5 if scale is None else scale
    pad = -seq_len % chunk_size  # padded keys come after every real query, so causality keeps them out
    n = (seq_len + pad) // chunk_size

    def chunks(x):  # (batch, seq_len, heads, e) -> (batch, heads, n, chunk_size, e), fp32
        x = torch.nn.functional.pad(x.float(), (0, 0, 0, 0, 0, pad))
        return x.view(batch, n, chunk_size, heads, x.shape[-1]).permute(0, 3, 1, 2, 4)

    with torch.autocast(q.device.type, enabled=False):
        q_c, k_c = chunks(q * scale), chunks(k)  # (batch, heads, n, C, d): s = q_c . k_c
        v_c = chunks(torch.cat([v, torch.ones_like(v[..., :1])], -1))  # (batch, heads, n, C, dv + 1)
        s = q_c @ k_c.transpose(-1, -2)  # (batch, heads, n, C, C)
        causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
        o = ((c0 + c1 * s + c2 * s * s) * causal) @ v_c  # (batch, heads, n, C, dv + 1)

        def before(state):  # per chunk, the sum over all earlier chunks: a shifted prefix sum over n (not
            # cumsum - state, which would let a large later chunk's rounding into an earlier one)
            return torch.nn.functional.pad(state.cumsum(2), (0, 0, 0, 0, 1, 0))[:, :, :-1]

        if c0:
            o = o + c0 * before(v_c.sum(3, keepdim=True))  # (batch, heads, n, 1, dv + 1)
        if c1:
            o = o + c1 * q_c @ before(k_c.transpose(-1, -2) @ v_c)  # state (batch, heads, n, d, dv + 1)
        if c2:
            kv = (k_c.unsqueeze(-1) * v_c.unsqueeze(-2)).flatten(-2)  # (batch, heads, n, C, d * (dv + 1))
            state = before(k_c.transpose(-1, -2) @ kv)  # (batch, heads, n, d, d * (dv + 1))
            q_state = (q_c @ state).unflatten(-1, (d, dv + 1))  # (batch, heads, n, C, d, dv + 1)
            o = o + c2 * (q_state * q_c.unsqueeze(-1)).sum(-2)
        o = o[..., :dv] / (o[..., dv:] + eps)  # (batch, heads, n, C, dv)
    o = o.permute(0, 2, 3, 1, 4).reshape(batch, n * chunk_size, heads, dv)
    return o[:, :seq_len].to(v.dtype)


def quadform_rebased(q, k, v, scale=None, eps=1e-12):
    """ReBased: score (scale * q.k)^2. Shapes as in quadform_polynomial."""
    return quadform_polynomial(q, k, v, REBASED_COEFFS, scale, eps)


def quadform_based(q, k, v, scale=None, eps=1e-12):
    """Based: score 1 + s + s^2 / 2 with s = scale * q.k. Shapes as in quadform_polynomial."""
    return quadform_polynomial(q, k, v, BASED_COEFFS, scale, eps)
