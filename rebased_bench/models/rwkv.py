"""The RWKV-v4 time mixer (BlinkDL's RWKV-LM, as the paper's zoology fork used it) in plain PyTorch.

WKV, per channel, with decay w = -exp(time_decay) < 0 per step and bonus u = time_first:
    wkv_t = (sum_{j<t} e^{(t-1-j) w + k_j} v_j + e^{u + k_t} v_t) / (sum_{j<t} e^{(t-1-j) w + k_j} + e^{u + k_t})
The official code runs a CUDA kernel that keeps the sums scaled by a running maximum. `wkv_reference` is that
recurrence step by step; `wkv_chunked`, the fast path, is exact pairwise inside a chunk and carries the scaled
state across chunks. Both compute in fp32, also under bf16 autocast.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# time_decay is clamped here before exp: e^{-e^30} per step is already 0 in fp32, and a finite w keeps
# (0 steps) * w from being 0 * inf = nan in both paths.
MAX_TIME_DECAY = 30.0
EMPTY_LOG = -1e30  # log-scale of an empty state: exp(EMPTY_LOG - anything finite) == 0


def decay_rate(time_decay):
    """w = -exp(time_decay): the per-step log-decay, (d,) fp32."""
    return -torch.exp(time_decay.float().clamp(max=MAX_TIME_DECAY))


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


class RWKVTimeMixer(nn.Module):
    """RWKV-v4 time mixing, one head of width d_model. x: (batch, seq_len, d_model) -> same shape.

    Token shift with learned mixes for k, v, r; WKV; receptance gate sigmoid(r); output projection. The
    time_* parameters get RWKV-LM's layer-dependent init for a model of n_layers layers.
    """

    def __init__(self, d_model, layer_idx=0, n_layers=2, chunk_size=16, reference=False):
        super().__init__()
        self.chunk_size, self.reference = chunk_size, reference
        ratio_0_to_1 = layer_idx / max(1, n_layers - 1)
        ratio_1_to_almost_0 = 1.0 - layer_idx / n_layers
        channel = torch.arange(d_model, dtype=torch.float32)
        self.time_decay = nn.Parameter(-5 + 8 * (channel / max(1, d_model - 1)) ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = ((channel + 1) % 3 - 1) * 0.5
        self.time_first = nn.Parameter(torch.full((d_model,), math.log(0.3)) + zigzag)
        mix = (channel / d_model).view(1, 1, d_model)
        self.time_mix_k = nn.Parameter(mix ** ratio_1_to_almost_0)
        self.time_mix_v = nn.Parameter(mix ** ratio_1_to_almost_0 + 0.3 * ratio_0_to_1)
        self.time_mix_r = nn.Parameter(mix ** (0.5 * ratio_1_to_almost_0))
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)
        # The official TorchScript module hid these from the model-wide normal(0, 0.02) init: they keep
        # PyTorch's default init there, and `_no_reinit` keeps it here.
        for layer in (self.key, self.value, self.receptance, self.output):
            layer.weight._no_reinit = True

    def forward(self, x):
        shifted = F.pad(x, (0, 0, 1, -1))  # (batch, seq_len, d_model): the previous token, zeros at t = 0
        k = self.key(x * self.time_mix_k + shifted * (1 - self.time_mix_k))
        v = self.value(x * self.time_mix_v + shifted * (1 - self.time_mix_v))
        r = self.receptance(x * self.time_mix_r + shifted * (1 - self.time_mix_r))
        with torch.autocast(x.device.type, enabled=False):  # WKV in fp32, as the official kernel
            w, u = decay_rate(self.time_decay), self.time_first.float()
            if self.reference:
                wkv = wkv_reference(w, u, k.float(), v.float())
            else:
                wkv = wkv_chunked(w, u, k, v, self.chunk_size)
            gated = torch.sigmoid(r.float()) * wkv
        return self.output(gated.to(x.dtype))
