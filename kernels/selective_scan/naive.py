"""The selective scan of Mamba one step at a time: the readable reference the fast paths are tested against.

The signature is mamba-ssm's `selective_scan_fn` (and its `selective_scan_ref`): the scan proper plus the
optional pieces around it that the fused kernel folds in (delta's bias and softplus, the D skip, the z gate).
"""

import torch
import torch.nn.functional as F


def scan_delta(delta, delta_bias=None, delta_softplus=False):
    """The step sizes the scan uses: softplus(delta + delta_bias) with both optional. delta: (batch, seq_len, d_inner)."""
    if delta_bias is not None:
        delta = delta + delta_bias
    return F.softplus(delta) if delta_softplus else delta


def skip_and_gate(y, u, D=None, z=None):
    """(y + D u) silu(z), with both optional. y, u, z: (batch, seq_len, d_inner); D: (d_inner,)."""
    if D is not None:
        y = y + u * D
    return y * F.silu(z) if z is not None else y


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence one step at a time: h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, y_t = C_t . h_t.

    u, delta: (batch, seq_len, d_inner); A: (d_inner, d_state); B, C: (batch, seq_len, d_state)
    -> y: (batch, seq_len, d_inner). Optional, as in mamba-ssm: delta <- softplus(delta + delta_bias) first
    (delta_bias: (d_inner,)), then y <- (y + D u) silu(z) (D: (d_inner,), z: like u).
    """
    delta = scan_delta(delta, delta_bias, delta_softplus)
    batch, seq_len, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])  # (batch, d_inner, d_state)
    ys = []
    for t in range(seq_len):
        decay = torch.exp(delta[:, t, :, None] * A)  # (batch, d_inner, d_state)
        h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return skip_and_gate(torch.stack(ys, dim=1), u, D, z)
