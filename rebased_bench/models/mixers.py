"""Sequence mixers in plain PyTorch; linear attention reaches its kernel through rebased_bench.kernels."""

import torch
import torch.nn.functional as F
from torch import nn

from rebased_bench.kernels import polynomial_attention


class ShortConv(nn.Module):
    """Depthwise causal convolution over the sequence. x: (batch, seq_len, d_model) -> same shape."""

    def __init__(self, d_model, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, padding=kernel_size - 1)

    def forward(self, x):
        return self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


class BaseConv(nn.Module):
    """Zoology's BaseConv: y = ShortConv_k3(u) * Linear(u) + u. u: (batch, seq_len, d_model)."""

    def __init__(self, d_model, kernel_size=3):
        super().__init__()
        self.conv = ShortConv(d_model, kernel_size)
        self.projection = nn.Linear(d_model, d_model)

    def forward(self, u):
        return self.conv(u) * self.projection(u) + u


class SelfAttention(nn.Module):
    """Causal multi-head softmax attention. x: (batch, seq_len, d_model) -> same shape."""

    def __init__(self, d_model, num_heads=1, dropout=0.1):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        batch, seq_len, d_model = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, d_model // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, seq_len, head_dim)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(o.transpose(1, 2).reshape(batch, seq_len, d_model))


class QKLayerNorm(nn.Module):
    """The paper's ReBased normalization: a separate LayerNorm for q and k over all heads' features."""

    def __init__(self, num_heads, feature_dim):
        super().__init__()
        self.q_norm = nn.LayerNorm(num_heads * feature_dim)
        self.k_norm = nn.LayerNorm(num_heads * feature_dim)

    def forward(self, q, k):
        """q, k: (batch, seq_len, heads, feature_dim) -> same shapes."""
        return self.q_norm(q.flatten(2)).view_as(q), self.k_norm(k.flatten(2)).view_as(k)


class Identity2(nn.Module):
    """No normalization of q and k."""

    def forward(self, q, k):
        return q, k


# name -> (q/k normalization factory (num_heads, feature_dim) -> module, polynomial score of the kernel)
FEATURE_MAPS = {
    "rebased": (QKLayerNorm, "rebased"),
    "based": (lambda num_heads, feature_dim: Identity2(), "based"),
}


class LinearAttention(nn.Module):
    """Causal linear attention with a polynomial kernel: Based (1 + s + s^2/2) or ReBased ((γ·norm(x)+β)^2).

    value_head_dim=None keeps the paper's quirk: the value head dim is d_model // num_heads (5/10/21/42 at
    d_model 64/128/256/512), so the v/o inner width (60/120/252/504) is narrower than d_model.
    x: (batch, seq_len, d_model) -> same shape.
    """

    def __init__(self, d_model, feature_map="rebased", num_heads=12, feature_dim=16, value_head_dim=None, eps=1e-12):
        super().__init__()
        norm_factory, self.score = FEATURE_MAPS[feature_map]
        self.num_heads, self.feature_dim, self.eps = num_heads, feature_dim, eps
        self.value_head_dim = value_head_dim or max(1, d_model // num_heads)
        self.q_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, num_heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, num_heads * self.value_head_dim, bias=False)
        self.out_proj = nn.Linear(num_heads * self.value_head_dim, d_model, bias=False)
        self.norm = norm_factory(num_heads, feature_dim)

    def features(self, x):
        """Normalized q, k (batch, seq_len, heads, feature_dim) and v (batch, seq_len, heads, value_head_dim)."""
        batch, seq_len, _ = x.shape
        q = self.q_proj(x).view(batch, seq_len, self.num_heads, self.feature_dim)
        k = self.k_proj(x).view(batch, seq_len, self.num_heads, self.feature_dim)
        v = self.v_proj(x).view(batch, seq_len, self.num_heads, self.value_head_dim)
        q, k = self.norm(q, k)
        return q, k, v

    def forward(self, x):
        q, k, v = self.features(x)
        o = polynomial_attention(q, k, v, score=self.score, eps=self.eps)  # (batch, seq_len, heads, value_head_dim)
        return self.out_proj(o.flatten(2))
