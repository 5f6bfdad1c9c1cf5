"""Plain-PyTorch references for chunked / recurrent ReBased with the explicit symmetric feature map.

State format (shared with the Triton kernel and `rebased_step`): a tuple (S, z), both fp32,
    S: (batch, heads, D', dv) = sum_s phi(k_s) v_s^T,    z: (batch, heads, D') = sum_s phi(k_s),
with D' = d(d+1)/2 and phi the symmetric half of x (outer) x, features in row-major upper-triangle
order (0,0), (0,1), ..., (0,d-1), (1,1), ..., (d-1,d-1): phi_ij = x_i x_j for i == j and
sqrt(2) x_i x_j for i < j, so that phi(q) . phi(k) = (q . k)^2. The state holds unscaled k; the
score scale is applied to q, so one state serves any `scale`.
"""

import math

import torch


def feature_index(d, device=None):
    """(I, J) int64 index vectors of the D' = d(d+1)/2 symmetric features, and their coefficients."""
    I, J = torch.triu_indices(d, d, device=device)
    coef = torch.where(I == J, 1.0, math.sqrt(2.0)).to(device=device, dtype=torch.float32)
    return I, J, coef


def rebased_feature_map(x):
    """phi(x): (..., d) -> (..., d(d+1)/2) in fp32, with phi(q) . phi(k) = (q . k)^2."""
    I, J, coef = feature_index(x.shape[-1], x.device)
    x = x.float()
    return x[..., I] * x[..., J] * coef


def empty_state(batch, heads, d, dv, device=None):
    """A zero (S, z) state: S (batch, heads, D', dv) fp32, z (batch, heads, D') fp32."""
    dp = d * (d + 1) // 2
    return (torch.zeros(batch, heads, dp, dv, device=device), torch.zeros(batch, heads, dp, device=device))


def naive_chunk_rebased(q, k, v, scale=None, eps=1e-12, initial_state=None, output_final_state=False, chunk_size=16):
    """Chunked ReBased in fp32: squared scores inside a chunk, the (S, z) state across chunks.

    q, k: (batch, seq_len, heads, d); v: (batch, seq_len, heads, dv) -> o (batch, seq_len, heads, dv)
    in v's dtype, and the final state (S, z) when output_final_state (else None).
    """
    b, t, h, d = q.shape
    dv = v.shape[-1]
    scale = d**-0.5 if scale is None else scale
    S, z = empty_state(b, h, d, dv, q.device) if initial_state is None else initial_state
    S, z = S.float(), z.float()
    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))  # (batch, heads, seq_len, *)
    outs = []
    for start in range(0, t, chunk_size):
        qc, kc, vc = (x[:, :, start : start + chunk_size] for x in (qf, kf, vf))
        c = qc.shape[2]
        phq, phk = rebased_feature_map(qc) * scale**2, rebased_feature_map(kc)  # (b, h, c, D')
        a = ((qc @ kc.transpose(-1, -2)) * scale) ** 2  # (b, h, c, c)
        a = a * torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        num = a @ vc + phq @ S  # (b, h, c, dv)
        den = a.sum(-1) + (phq * z[:, :, None]).sum(-1)  # (b, h, c), kept in fp32
        outs.append(num / (den.unsqueeze(-1) + eps))
        S = S + phk.transpose(-1, -2) @ vc
        z = z + phk.sum(2)
    o = torch.cat(outs, 2).transpose(1, 2).to(v.dtype)
    return o, ((S, z) if output_final_state else None)


def naive_recurrent_rebased(q, k, v, scale=None, eps=1e-12, initial_state=None, output_final_state=False):
    """Token-by-token recurrence through `rebased_step`; shapes as in naive_chunk_rebased."""
    state, outs = initial_state, []
    for i in range(q.shape[1]):
        o_t, state = rebased_step(q[:, i], k[:, i], v[:, i], state, scale=scale, eps=eps)
        outs.append(o_t)
    return torch.stack(outs, 1), (state if output_final_state else None)


def rebased_step(q_t, k_t, v_t, state=None, scale=None, eps=1e-12):
    """One decoding step: add token t to the state, then read it with q_t (the token sees itself).

    q_t, k_t: (batch, heads, d) or (batch, 1, heads, d); v_t: (batch, heads, dv) or (batch, 1, heads, dv);
    state: (S, z) as documented above, or None for an empty one -> (o_t in v's dtype, same layout as v_t; new state).
    """
    one = q_t.dim() == 4
    if one:
        q_t, k_t, v_t = q_t[:, 0], k_t[:, 0], v_t[:, 0]
    b, h, d = q_t.shape
    scale = d**-0.5 if scale is None else scale
    S, z = empty_state(b, h, d, v_t.shape[-1], q_t.device) if state is None else state
    phk = rebased_feature_map(k_t)  # (b, h, D')
    S = S + phk.unsqueeze(-1) * v_t.float().unsqueeze(-2)
    z = z + phk
    phq = rebased_feature_map(q_t) * scale**2
    num = (phq.unsqueeze(-2) @ S).squeeze(-2)  # (b, h, dv)
    den = (phq * z).sum(-1, keepdim=True)
    o_t = (num / (den + eps)).to(v_t.dtype)
    return (o_t.unsqueeze(1) if one else o_t), (S, z)
