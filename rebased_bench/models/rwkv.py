"""The RWKV-v4 time mixer (BlinkDL's RWKV-LM, as the paper's zoology fork used it).

WKV, per channel, with decay w = -exp(time_decay) < 0 per step and bonus u = time_first:
    wkv_t = (sum_{j<t} e^{(t-1-j) w + k_j} v_j + e^{u + k_t} v_t) / (sum_{j<t} e^{(t-1-j) w + k_j} + e^{u + k_t})
The official code runs a CUDA kernel that keeps the sums scaled by a running maximum. Here WKV lives in
rebased_bench.kernels (kernels/wkv/): that kernel's recurrence in Triton on CUDA, a chunked PyTorch path
elsewhere (exact pairwise inside a chunk, the scaled state carried across chunks), and the step-by-step
reference `wkv_reference` (`reference=True`). All compute in fp32, also under bf16 autocast.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import wkv_fn, wkv_reference

# time_decay is clamped here before exp: e^{-e^30} per step is already 0 in fp32, and a finite w keeps
# (0 steps) * w from being 0 * inf = nan in every path.
MAX_TIME_DECAY = 30.0


def decay_rate(time_decay):
    """w = -exp(time_decay): the per-step log-decay, (d,) fp32."""
    return -torch.exp(time_decay.float().clamp(max=MAX_TIME_DECAY))


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
                wkv = wkv_fn(w, u, k, v, self.chunk_size)
            gated = torch.sigmoid(r.float()) * wkv
        return self.output(gated.to(x.dtype))
