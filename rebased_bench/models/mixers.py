"""Sequence mixers in plain PyTorch; linear attention reaches its kernel through rebased_bench.kernels."""

import torch
import torch.nn.functional as F
from torch import nn

from rebased_bench.kernels import polynomial_attention
from rebased_bench.kernels.polynomial.naive import BASED_COEFFS, REBASED_COEFFS


class ShortConv(nn.Module):
    """Depthwise causal convolution over the sequence. x: (batch, seq_len, d_model) -> same shape.

    The nn.Conv1d holds the parameters (its init and state_dict names); forward computes the same sum as shifted
    products, which torch.compile fuses into one kernel (cuDNN's depthwise kernels took ~3x longer on the GPU).
    """

    def __init__(self, d_model, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, padding=kernel_size - 1)

    def forward(self, x):
        seq_len, taps = x.shape[1], self.conv.kernel_size[0]
        padded = F.pad(x, (0, 0, taps - 1, 0))  # (batch, taps - 1 + seq_len, d_model), zeros before the start
        weight = self.conv.weight[:, 0]  # (d_model, taps); tap i reads x[t - (taps - 1) + i]
        y = self.conv.bias + padded[:, :seq_len] * weight[:, 0]
        for i in range(1, taps):
            y = y + padded[:, i:i + seq_len] * weight[:, i]
        return y


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

    def attention_map(self, x):
        """Causal softmax probabilities averaged over heads, without dropout.

        x: (batch, seq_len, d_model) -> (batch, seq_len, seq_len).
        """
        batch, seq_len, d_model = x.shape
        qkv = self.qkv(x).view(batch, seq_len, 3, self.num_heads, d_model // self.num_heads)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, seq_len, head_dim)
        scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (batch, heads, seq_len, seq_len)
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(-1).mean(1)


class QKLayerNorm(nn.Module):
    """The paper's ReBased normalization: a separate LayerNorm for q and k over all heads' features."""

    def __init__(self, num_heads, feature_dim):
        super().__init__()
        self.q_norm = nn.LayerNorm(num_heads * feature_dim)
        self.k_norm = nn.LayerNorm(num_heads * feature_dim)

    def forward(self, q, k):
        """q, k: (batch, seq_len, heads, feature_dim) -> same shapes."""
        return self.q_norm(q.flatten(2)).view_as(q), self.k_norm(k.flatten(2)).view_as(k)

    def affine(self):
        """The learned γ, β of q and k (None where absent), for the ablation rows."""
        return {"q": (self.q_norm.weight, self.q_norm.bias), "k": (self.k_norm.weight, self.k_norm.bias)}


class Identity2(nn.Module):
    """No normalization of q and k."""

    def forward(self, q, k):
        return q, k

    def affine(self):
        return {"q": (None, None), "k": (None, None)}


class QKTransform(nn.Module):
    """The paper's ablation switches: x -> γ·norm(x) + β for q and k, each part optional.

    As in the paper's code (corl-team/rebased, src/mixers/rebased.py), q and k each own a γ and a β of shape
    (heads * feature_dim,) and norm() standardizes over all heads' features (eps 1e-5, inside the sqrt only:
    the official Normalizer fails on a misspelled attribute and adds eps twice). shared=True is
    flash-linear-attention's ReBased feature map instead: ONE γ, β of shape (feature_dim,) used by q and k
    and by every head, norm() over each head's feature_dim.
    """

    def __init__(self, num_heads, feature_dim, normalize, gamma, beta, shared=False, eps=1e-5):
        super().__init__()
        self.normalize, self.shared, self.eps = normalize, shared, eps
        width = feature_dim if shared else num_heads * feature_dim
        owners = ("qk",) if shared else ("q", "k")
        self.gamma = nn.ParameterDict({o: nn.Parameter(torch.ones(width)) for o in owners}) if gamma else None
        self.beta = nn.ParameterDict({o: nn.Parameter(torch.zeros(width)) for o in owners}) if beta else None

    def _param(self, table, owner):
        return None if table is None else table["qk" if self.shared else owner]

    def _transform(self, x, owner):
        x = x if self.shared else x.flatten(2)  # (batch, seq_len, heads, feature_dim) or (..., heads * feature_dim)
        if self.normalize:
            x = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        gamma, beta = self._param(self.gamma, owner), self._param(self.beta, owner)
        x = x if gamma is None else x * gamma
        return x if beta is None else x + beta

    def forward(self, q, k):
        """q, k: (batch, seq_len, heads, feature_dim) -> same shapes."""
        return self._transform(q, "q").view_as(q), self._transform(k, "k").view_as(k)

    def affine(self):
        """The learned γ, β of q and k (None where absent; the same tensors for q and k when shared)."""
        return {o: (self._param(self.gamma, o), self._param(self.beta, o)) for o in ("q", "k")}


def _switches(normalize=False, gamma=False, beta=False, shared=False):
    return lambda num_heads, feature_dim: QKTransform(num_heads, feature_dim, normalize, gamma, beta, shared)


# name -> (q/k normalization factory (num_heads, feature_dim) -> module, polynomial score of the kernel).
# The squared variants share the score s^2 (s = q.k / sqrt(feature_dim)) and differ only in what q, k go through.
FEATURE_MAPS = {
    "rebased": (QKLayerNorm, "rebased"),  # (γ·norm(x)+β)^2, the paper's layer
    "based": (lambda num_heads, feature_dim: Identity2(), "based"),  # 1 + s + s^2/2
    "x2": (lambda num_heads, feature_dim: Identity2(), "rebased"),  # x^2
    "gamma_x2": (_switches(gamma=True), "rebased"),  # (γx)^2
    "affine_x2": (_switches(gamma=True, beta=True), "rebased"),  # (γx+β)^2
    "norm_x2": (_switches(normalize=True), "rebased"),  # norm(x)^2
    "rebased_shared": (_switches(normalize=True, gamma=True, beta=True, shared=True), "rebased"),
}
SCORE_COEFFS = {"rebased": REBASED_COEFFS, "based": BASED_COEFFS}  # score -> (c0, c1, c2) of c0 + c1 s + c2 s^2


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

    def attention_map(self, x):
        """Causal row-normalized kernel matrix tril(p(q.k)) / row sum, averaged over heads.

        x: (batch, seq_len, d_model) -> (batch, seq_len, seq_len); the weights forward() gives each value.
        """
        q, k, _ = self.features(x)
        c0, c1, c2 = SCORE_COEFFS[self.score]
        s = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) * self.feature_dim ** -0.5  # (b, h, seq, seq)
        causal = torch.ones(s.shape[-1], s.shape[-1], dtype=torch.bool, device=x.device).tril()
        weights = (c0 + c1 * s + c2 * s * s).masked_fill(~causal, 0.0)
        return (weights / (weights.sum(-1, keepdim=True) + self.eps)).mean(1)
