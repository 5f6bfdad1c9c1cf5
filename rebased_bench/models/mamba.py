"""Mamba (Gu & Dao, 2023): the block of the paper's MQAR setup.

The official code runs mamba-ssm's fused CUDA kernel. Here the selective scan lives in rebased_bench.kernels
(kernels/selective_scan/): fused Triton kernels on CUDA, a chunked PyTorch path elsewhere, and the sequential
reference (`reference=True`); all compute in fp32, also under bf16 autocast.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import selective_scan_fn, selective_scan_reference


class Mamba(nn.Module):
    """The Mamba block (mamba-ssm's `Mamba`, as the paper's zoology fork configured it). x: (batch, seq_len, d_model).

    in_proj -> (x, z); x -> causal depthwise conv (d_conv) -> SiLU -> x_proj -> (dt, B, C); delta =
    softplus(dt_proj(dt)); selective scan with A = -exp(A_log) (S4D-real init) and the D skip; gate SiLU(z);
    out_proj. The model wraps it in mamba-ssm's RMSNorm block (`block`: lm.MambaBlock), as the paper's code did.
    """

    block = "mamba"

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4,
                 chunk_size=None, reference=False):
        super().__init__()
        self.d_inner, self.d_state = expand * d_model, d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.chunk_size, self.reference = chunk_size, reference
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        dt_std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        # dt bias: softplus(bias) log-uniform in [dt_min, dt_max]; `_no_reinit` keeps it through the model's init.
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)  # S4D-real: A[:, n] = -(n+1)
        self.A_log = nn.Parameter(torch.log(A))  # (d_inner, d_state)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, hidden):
        seq_len = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # each (batch, seq_len, d_inner)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :seq_len].transpose(1, 2))
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (batch, seq_len, d_inner); the bias is added in fp32
        # The scan, its inputs and the gate stay in fp32 under bf16 autocast, as in mamba-ssm's kernel.
        with torch.autocast(hidden.device.type, enabled=False):
            A = -torch.exp(self.A_log.float())
            args = [t.float() for t in (x, dt, A, B, C)]
            # delta = softplus(dt + bias), y = (scan + D x) silu(z): folded into the kernel on CUDA
            fused = dict(D=self.D.float(), z=z.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
            if self.reference:
                y = selective_scan_reference(*args, **fused)
            else:
                y = selective_scan_fn(*args, **fused, chunk_size=self.chunk_size)  # (batch, seq_len, d_inner)
        return self.out_proj(y.to(hidden.dtype))
