"""WKV in chunked PyTorch: the fast path off CUDA (the CPU trainer and tests), no Triton needed.

Exact pairwise weights inside chunks of 16 positions, each row scaled by its own maximum, and the scaled state
(numerator, denominator, log-scale) carried across chunks by a log2(chunks)-pass scan. Its pairwise weights are
(batch, seq_len, d, chunk) fp32, 1 GB per layer at the GPU benchmark's shape: CUDA tensors take the Triton
kernels in recurrent.py instead.
"""

import torch
import torch.nn.functional as F

EMPTY_LOG = -1e30  # log-scale of an empty state: exp(EMPTY_LOG - anything finite) == 0


def _chunk_entry_states(w, kc, vc):
    """State entering each chunk from all earlier ones: numerator, denominator, log-scale, each (batch, n_chunks, d).

    kc, vc: (batch, n_chunks, d, chunk). Each chunk's own end state is summed exactly, then an inclusive
    Hillis-Steele scan over chunks combines them in log-scale (log2(n_chunks) passes); log-scales are
    detached maxima: the represented values num * exp(log) are exact and so are their gradients.
    """
    n_chunks, chunk = kc.shape[1], kc.shape[3]
    to_end = torch.arange(chunk - 1, -1, -1, device=kc.device, dtype=kc.dtype)  # steps from each key to chunk end
    z = kc + to_end * w[:, None]  # (batch, n_chunks, d, chunk)
    log = z.detach().amax(-1)
    weight = torch.exp(z - log[..., None])
    num, den = (weight * vc).sum(-1), weight.sum(-1)
    span = 1
    while span < n_chunks:  # after this pass, chunk c holds chunks c - 2 span + 1 .. c
        shift = (0, 0, span, 0)  # earlier chunk c - span, an empty state where there is none
        prev_num, prev_den = F.pad(num[:, :-span], shift), F.pad(den[:, :-span], shift)
        prev_log = F.pad(log[:, :-span], shift, value=EMPTY_LOG)
        new_log = torch.maximum(log, prev_log + span * chunk * w.detach())
        keep, carried = torch.exp(log - new_log), torch.exp(prev_log - new_log + span * chunk * w)
        num, den, log = num * keep + prev_num * carried, den * keep + prev_den * carried, new_log
        span *= 2
    entry = (0, 0, 1, 0)  # the state entering chunk c is chunk c - 1's inclusive one
    return (F.pad(num[:, :-1], entry), F.pad(den[:, :-1], entry),
            F.pad(log[:, :-1], entry, value=EMPTY_LOG))


def wkv_chunked(w, u, k, v, chunk_size=16):
    """Fast path of `wkv_reference` (same shapes). Memory: (batch, seq_len, d, chunk_size) fp32 pairwise weights.

    chunk_size 16 was the fastest on an H100 at d_model 128, seq_len 2048, batch 64 (8: 1.4x slower, 32: 1.2x).
    """
    w, u, k, v = w.float(), u.float(), k.float(), v.float()
    batch, seq_len, d = k.shape
    chunk = chunk_size
    pad = -seq_len % chunk  # padded keys come last: no earlier output sees them
    k, v = F.pad(k, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
    n_chunks = (seq_len + pad) // chunk
    kc = k.view(batch, n_chunks, chunk, d).transpose(2, 3)  # (batch, n_chunks, d, chunk)
    vc = v.view(batch, n_chunks, chunk, d).transpose(2, 3)
    pos = torch.arange(chunk, device=k.device, dtype=k.dtype)
    lag = pos[:, None] - 1 - pos[None, :]  # (chunk, chunk): t - 1 - j for output t, key j
    # log-weight of key j in output t, less k_j: decay for earlier keys, the bonus u for the key at t itself
    pair = torch.where(lag >= 0, lag * w[:, None, None], float("-inf"))  # (d, chunk, chunk)
    pair = torch.where(lag == -1, u[:, None, None], pair)
    logits = kc[..., None, :] + pair  # (batch, n_chunks, d, chunk, chunk): row t, column j
    entry_num, entry_den, entry_log = _chunk_entry_states(w, kc, vc)
    entry_logits = entry_log[..., None] + pos * w[:, None]  # (batch, n_chunks, d, chunk): entry state seen at t
    top = torch.maximum(logits.detach().amax(-1), entry_logits.detach())  # row maximum: the scale, detached
    weights = logits.sub_(top[..., None]).exp_()  # in place: no second (.., chunk, chunk) tensor
    entry_weight = torch.exp(entry_logits - top)
    sums = weights @ torch.stack([vc, torch.ones_like(vc)], dim=-1)  # (batch, n_chunks, d, chunk, 2)
    num = sums[..., 0] + entry_weight * entry_num[..., None]
    den = sums[..., 1] + entry_weight * entry_den[..., None]  # >= 1: the row maximum has weight 1
    return (num / den).transpose(2, 3).reshape(batch, -1, d)[:, :seq_len]
