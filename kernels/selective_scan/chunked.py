"""The selective scan in chunked PyTorch: the fast path off CUDA (the CPU trainer and tests), no Triton needed.

Chunks of ~sqrt(seq_len) positions, one step per position on all chunks at once, then the state carried from
chunk to chunk, then a second pass from the right entry states. The backward pass runs the same scan in reverse
and keeps h (batch, seq_len, d_inner, d_state) from the forward pass: fine on a CPU, 2.1 GB per layer at the
GPU benchmark's shape, which is why CUDA tensors take the Triton kernels in recurrent.py instead.
"""

import math

import torch
import torch.nn.functional as F

from .naive import scan_delta, skip_and_gate


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


class ChunkedSelectiveScan(torch.autograd.Function):
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


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=None):
    """Chunked fast path of `selective_scan_reference` (same arguments), in fp32; chunk_size None picks ~sqrt(seq_len).

    The scan proper is one autograd.Function; delta's bias and softplus, the D skip and the z gate are PyTorch ops.
    """
    chunk = chunk_size or auto_chunk_size(u.shape[1])
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    delta = scan_delta(delta, None if delta_bias is None else delta_bias.float(), delta_softplus)
    y = ChunkedSelectiveScan.apply(u, delta, A, B, C, chunk)
    return skip_and_gate(y, u, None if D is None else D.float(), None if z is None else z.float())
