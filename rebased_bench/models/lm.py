"""The 2-layer "Based recipe" language model of the ReBased paper's MQAR experiments."""

from dataclasses import dataclass

import torch
from torch import nn

from .registry import resolve


@dataclass(frozen=True)
class ModelConfig:
    mixer: str
    d_model: int
    seq_len: int
    vocab_size: int = 8192
    n_layers: int = 2
    embed_dropout: float = 0.1
    value_dim_quirk: bool = True


class Block(nn.Module):
    """Zoology's pre-norm block with no MLP, residual carried beside the hidden state.

    Its state mixer is the identity, so a block hands on norm2(residual) as the next hidden state and the
    next block adds that to the residual again: this is what the paper's code ran, kept for faithfulness.
    """

    def __init__(self, d_model, mixer):
        super().__init__()
        self.norm1, self.mixer, self.norm2 = nn.LayerNorm(d_model), mixer, nn.LayerNorm(d_model)

    def forward(self, hidden, residual):
        """hidden, residual: (batch, seq_len, d_model); residual is None before the first block."""
        residual = hidden if residual is None else hidden + residual
        residual = self.mixer(self.norm1(residual)) + residual
        return self.norm2(residual), residual


class MambaBlock(nn.Module):
    """mamba-ssm's Block, which the paper's code used for Mamba: add, RMSNorm, mixer, no second norm.

    The mixer's output is handed on as the next hidden state: x_{i+1} = x_i + mixer(rmsnorm(x_i)).
    """

    def __init__(self, d_model, mixer):
        super().__init__()
        self.norm, self.mixer = nn.RMSNorm(d_model, eps=1e-5), mixer

    def forward(self, hidden, residual):
        residual = hidden if residual is None else hidden + residual
        return self.mixer(self.norm(residual)), residual


# A mixer picks its block with a `block` attribute (Mamba: "mamba"); zoology's Block otherwise.
BLOCKS = {"transformer": Block, "mamba": MambaBlock}


class LanguageModel(nn.Module):
    """Token + learned position embeddings, mixer blocks, final LayerNorm, LM head tied to the embedding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        factory = resolve(config.mixer)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.seq_len, config.d_model)
        self.dropout = nn.Dropout(config.embed_dropout)
        mixers = [factory(config.d_model, i, config.value_dim_quirk) for i in range(config.n_layers)]
        self.blocks = nn.ModuleList(BLOCKS[getattr(m, "block", "transformer")](config.d_model, m) for m in mixers)
        self.norm = nn.LayerNorm(config.d_model)
        self.apply(_init_weights)

    def hidden(self, input_ids):
        """input_ids: (batch, seq_len) int64 -> final hidden states (batch, seq_len, d_model)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden, residual = self.dropout(self.embed(input_ids) + self.pos_embed(positions)), None
        for block in self.blocks:
            hidden, residual = block(hidden, residual)
        return self.norm(hidden + residual)

    def query_hidden(self, input_ids, query_index):
        """Final hidden states (batch, n, d_model) at the positions query_index (batch, n) names."""
        h = self.hidden(input_ids)
        return h.gather(1, query_index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    @property
    def head_weight(self):
        """The LM head (vocab, d_model): tied to the token embedding."""
        return self.embed.weight

    def forward(self, input_ids, query_index=None):
        """Logits (batch, seq_len, vocab), or (batch, n, vocab) at the positions query_index (batch, n) names.

        Only query positions carry MQAR labels, so projecting just those rows onto the vocabulary gives the
        same loss and accuracy as full logits at a fraction of the cost (tests/test_training.py checks it).
        """
        h = self.hidden(input_ids) if query_index is None else self.query_hidden(input_ids, query_index)
        return h @ self.head_weight.T


def _init_weights(module):
    # The paper's init: normal(0, 0.02); with PyTorch's default (std 1 embeddings) MQAR does not learn.
    # A parameter marked `_no_reinit` keeps its module's own init (mamba-ssm's convention: Mamba's dt bias).
    if isinstance(module, (nn.Linear, nn.Embedding)) and not getattr(module.weight, "_no_reinit", False):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
