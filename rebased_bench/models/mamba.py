"""Mamba (Gu & Dao, 2023) in plain PyTorch: the block of the paper's MQAR setup and its selective scan.

The official code runs mamba-ssm's fused CUDA kernel. Here the scan has a readable sequential reference
(`selective_scan_reference`) and a chunked fast path (`selective_scan`) with a hand-written backward that
reuses the same chunked scan backwards in time; both compute in fp32, also under bf16 autocast.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


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


def auto_chunk_size(seq_len):
    """Power of two near sqrt(seq_len): the in-chunk and the across-chunk loops then have similar lengths."""
    return 2 ** round(math.log2(math.sqrt(max(1, seq_len))))


def _scan_chunks_(x, delta, A, reverse=False):
    """In place, x_t += exp(delta_t A) * x_{t-1} (x_{t+1} when reverse): the linear recurrence over chunks.

    x: (batch, n_chunks, chunk, d_inner, d_state); delta: (batch, n_chunks, chunk, d_inner); A: (d_inner, d_state).
    Two passes over the chunks, one step per position on all chunks at once: the first finds each chunk's end
    state from a zero start (rolling, nothing stored), then the state entering each chunk is carried chunk by
    chunk, and the second pass runs the recurrence from it in place. Every factor is a decay in [0, 1], so
    nothing overflows at any length; the scan is memory-bound, so passes over x are what it costs.
    """
    n_chunks, chunk = x.shape[1], x.shape[2]
    decay = torch.mul(delta[..., None], A).exp_()  # (batch, n_chunks, chunk, d_inner, d_state)
    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    end = None
    for i in steps:
        end = x[:, :, i] if end is None else torch.addcmul(x[:, :, i], decay[:, :, i], end)
    through = torch.mul(delta.sum(2)[..., None], A).exp_()  # (batch, n_chunks, d_inner, d_state): across a chunk
    carry = torch.zeros_like(end)  # the full state entering each chunk
    for c in range(n_chunks - 2, -1, -1) if reverse else range(1, n_chunks):
        src = c + 1 if reverse else c - 1
        torch.addcmul(end[:, src], through[:, src], carry[:, src], out=carry[:, c])
    prev = carry
    for i in steps:
        x[:, :, i].addcmul_(decay[:, :, i], prev)
        prev = x[:, :, i]
    return x


class SelectiveScan(torch.autograd.Function):
    """Chunked selective scan; the backward pass runs the same scan in reverse instead of storing every step."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):
        batch, seq_len, d_inner = u.shape
        pad = -seq_len % chunk  # padded steps come last and add nothing: delta 0, u 0
        u, delta, B, C = (F.pad(t, (0, 0, 0, pad)) for t in (u, delta, B, C))
        shape = (batch, (seq_len + pad) // chunk, chunk)
        Bc, Cc = B.view(*shape, -1), C.view(*shape, -1)  # (batch, n_chunks, chunk, d_state)
        du = (delta * u).view(*shape, d_inner)  # (batch, n_chunks, chunk, d_inner)
        h = du[..., None] * Bc[..., None, :]  # (batch, n_chunks, chunk, d_inner, d_state)
        _scan_chunks_(h, delta.view(*shape, d_inner), A)
        y = torch.einsum("bctdn,bctn->bctd", h, Cc)
        ctx.save_for_backward(u, delta, A, B, C, h)
        ctx.seq_len, ctx.shape = seq_len, shape
        return y.reshape(batch, -1, d_inner)[:, :seq_len].contiguous()

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, h = ctx.saved_tensors
        shape, d_inner = ctx.shape, u.shape[-1]
        dy = F.pad(dy.float(), (0, 0, 0, u.shape[1] - ctx.seq_len)).view(*shape, d_inner)
        Bc, Cc = B.view(*shape, -1), C.view(*shape, -1)
        du = (delta * u).view(*shape, d_inner)
        dC = torch.einsum("bctdn,bctd->bctn", h, dy)
        # g_t = dL/dh_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}: the scan backwards with the next step's delta
        g = dy[..., None] * Cc[..., None, :]  # (batch, n_chunks, chunk, d_inner, d_state)
        delta_next = F.pad(delta[:, 1:], (0, 0, 0, 1)).view(*shape, d_inner)
        _scan_chunks_(g, delta_next, A, reverse=True)
        d_du = torch.einsum("bctdn,bctn->bctd", g, Bc)
        dB = torch.einsum("bctdn,bctd->bctn", g, du)
        # exp(delta_t A) h_{t-1} = h_t - du_t B_t, so h_{t-1} need not be kept; x = dL/d(delta_t A).
        x = torch.addcmul(h, du[..., None], Bc[..., None, :], value=-1).mul_(g)
        del g
        dA = torch.einsum("bctdn,bctd->dn", x, delta.view(*shape, d_inner))
        d_delta = torch.einsum("bctdn,dn->bctd", x, A) + d_du * u.view(*shape, d_inner)
        d_u = d_du * delta.view(*shape, d_inner)
        n = ctx.seq_len
        return (d_u.flatten(1, 2)[:, :n], d_delta.flatten(1, 2)[:, :n], dA,
                dB.flatten(1, 2)[:, :n], dC.flatten(1, 2)[:, :n], None)


def selective_scan(u, delta, A, B, C, chunk_size=None):
    """Chunked fast path of `selective_scan_reference` (same shapes), in fp32; chunk_size None picks ~sqrt(seq_len)."""
    chunk = chunk_size or auto_chunk_size(u.shape[1])
    return SelectiveScan.apply(u.float(), delta.float(), A.float(), B.float(), C.float(), chunk)


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
            delta = F.softplus(dt.float() + self.dt_proj.bias.float())
            A = -torch.exp(self.A_log.float())
            scan = selective_scan_reference if self.reference else selective_scan
            args = (x.float(), delta, A, B.float(), C.float())
            y = scan(*args) if self.reference else scan(*args, chunk_size=self.chunk_size)
            y = (y + x.float() * self.D.float()) * F.silu(z.float())  # (batch, seq_len, d_inner)
        return self.out_proj(y.to(hidden.dtype))
