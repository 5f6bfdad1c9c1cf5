"""Plain PyTorch references for polynomial-score causal attention (materializes seq_len x seq_len)."""

import torch

REBASED_COEFFS = (0.0, 0.0, 1.0)
BASED_COEFFS = (1.0, 1.0, 0.5)


def naive_parallel_polynomial(q, k, v, coeffs, scale=None, eps=1e-12):
    """o_t = sum_{s<=t} p(q_t.k_s) v_s / (sum_{s<=t} p(q_t.k_s) + eps), p(s) = c0 + c1 s + c2 s^2.

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> (batch, seq_len, heads, dv) in v's dtype.
    Scores and the denominator are computed in fp32.
    """
    c0, c1, c2 = coeffs
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    seq_len = q.shape[1]
    s = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) * scale  # (batch, heads, seq_len, seq_len)
    scores = c0 + c1 * s + c2 * s * s
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, 0.0)
    o = torch.einsum("bhts,bshd->bthd", scores, v.float())  # (batch, seq_len, heads, dv)
    z = scores.sum(-1).transpose(1, 2).unsqueeze(-1)  # (batch, seq_len, heads, 1)
    return (o / (z + eps)).to(v.dtype)


def naive_parallel_rebased(q, k, v, scale=None, eps=1e-12):
    """ReBased: score (scale * q.k)^2. Shapes as in naive_parallel_polynomial."""
    return naive_parallel_polynomial(q, k, v, REBASED_COEFFS, scale, eps)


def naive_parallel_based(q, k, v, scale=None, eps=1e-12):
    """Based: score 1 + s + s^2 / 2 with s = scale * q.k. Shapes as in naive_parallel_polynomial."""
    return naive_parallel_polynomial(q, k, v, BASED_COEFFS, scale, eps)
