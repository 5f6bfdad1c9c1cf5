"""Checks of a model's mixers before it trains: shape, finite values, causality.

A mixer maps (batch, seq_len, d_model) to the same shape, causally. Run on a random batch (fp32, eval mode, no
gradients) in the case's own model, on its device: every mixer must return that shape and finite values, and
changing the tokens after a position must leave every mixer's output up to that position unchanged. A failure
is a MixerCheckError naming the layer and what went wrong, which the runner turns into the case's error row.
"""

import torch
from torch import nn

BATCH = 2
SEED = 1234  # a generator of its own: the check must not move the global RNG that seeds training
# Causality: the largest change, relative to the output's scale, that is float noise and not a look ahead.
TOLERANCE = 1e-4


class MixerCheckError(Exception):
    """A mixer fails a check before training; the message says which layer and why."""


@torch.no_grad()
def check_mixers(model: nn.Module, device: torch.device):
    """Check every mixer of a LanguageModel (its `blocks`, `config.seq_len`, `config.vocab_size`) on `device`,
    where it moves the model (the check is of the kernels the case will train with)."""
    model.to(device)
    seq_len, vocab_size = model.config.seq_len, model.config.vocab_size
    generator = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(vocab_size, (BATCH, seq_len), generator=generator)
    # Outputs up to `position` must not see the tokens after it. An even position: the two tokens either side of
    # the cut share every power-of-two chunk, so a chunked kernel that peeks within its chunk is caught too.
    position = (seq_len // 2) & ~1
    perturbed = tokens.clone()
    shift = torch.randint(1, max(2, vocab_size), (BATCH, seq_len - position - 1), generator=generator)
    perturbed[:, position + 1:] = (tokens[:, position + 1:] + shift) % vocab_size
    was_training = model.training
    model.eval()
    try:
        before = _mixer_outputs(model, tokens.to(device))
        after = _mixer_outputs(model, perturbed.to(device))
    finally:
        model.train(was_training)
    for layer, (a, b) in enumerate(zip(before, after)):
        a, b = a[:, :position + 1].float(), b[:, :position + 1].float()
        change = (a - b).abs().max().item()
        if change > TOLERANCE * max(a.abs().max().item(), 1e-6):
            raise MixerCheckError(f"mixer of layer {layer} ({_name(model, layer)}) looks at future tokens: its output "
                                  f"up to position {position} changes by {change:.3g} when only later tokens change")


def _mixer_outputs(model, tokens) -> list:
    """The output of each block's mixer on `tokens` (batch, seq_len), checked for shape and finite values."""
    outputs, hooks = [], []

    def record(layer):
        def hook(module, args, output):
            expected = tuple(args[0].shape)
            if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
                got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise MixerCheckError(f"mixer of layer {layer} ({_name(model, layer)}) returns {got}, "
                                      f"expected a tensor of shape {expected} (batch, seq_len, d_model)")
            if not torch.isfinite(output).all():
                raise MixerCheckError(f"mixer of layer {layer} ({_name(model, layer)}) returns NaN or infinite "
                                      "values on a random batch")
            outputs.append(output)
        return hook

    for layer, block in enumerate(model.blocks):
        hooks.append(block.mixer.register_forward_hook(record(layer)))
    try:
        model.hidden(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _name(model, layer: int) -> str:
    return type(model.blocks[layer].mixer).__name__
