"""RWKV-v4's WKV one step at a time, with the official kernel's running maximum: the reference of the fast paths.

Per channel, with decay w = -exp(time_decay) < 0 per step and bonus u = time_first:
    wkv_t = (sum_{j<t} e^{(t-1-j) w + k_j} v_j + e^{u + k_t} v_t) / (sum_{j<t} e^{(t-1-j) w + k_j} + e^{u + k_t})
"""

import torch


def wkv_reference(w, u, k, v):
    """The official kernel's recurrence with its running maximum. w, u: (d,); k, v: (batch, seq_len, d) -> same."""
    batch, seq_len, d = k.shape
    num, den = k.new_zeros(batch, d), k.new_zeros(batch, d)  # state, scaled by exp(-log)
    log = k.new_full((batch, d), -1e38)
    out = []
    for t in range(seq_len):
        kt, vt = k[:, t], v[:, t]
        top = torch.maximum(log, u + kt)
        old, new = torch.exp(log - top), torch.exp(u + kt - top)
        out.append((old * num + new * vt) / (old * den + new))
        top = torch.maximum(log + w, kt)
        old, new = torch.exp(log + w - top), torch.exp(kt - top)
        num, den, log = old * num + new * vt, old * den + new, top
    return torch.stack(out, dim=1)
