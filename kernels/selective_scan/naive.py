"""The selective scan of Mamba one step at a time: the readable reference the fast paths are tested against."""

import torch


def selective_scan_reference(u, delta, A, B, C):
    """The recurrence one step at a time: h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, y_t = C_t . h_t.

    u, delta: (batch, seq_len, d_inner); A: (d_inner, d_state); B, C: (batch, seq_len, d_state)
    -> y: (batch, seq_len, d_inner). The D skip and the z gate belong to the caller.
    """
    batch, seq_len, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])  # (batch, d_inner, d_state)
    ys = []
    for t in range(seq_len):
        decay = torch.exp(delta[:, t, :, None] * A)  # (batch, d_inner, d_state)
        h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, dim=1)
