"""Check our MQAR model against the paper's own code (corl-team/rebased) with the same weights copied in.

    python benchmarks/paper_parity.py --paper-repo PATH [--mixers rebased,based,conv_attention,attention]
        [--d-models 64,128] [--seq-len 256] [--device cpu]

PATH is a clone of https://github.com/corl-team/rebased; its code is imported from there at run time, never
copied here. The paper's model is src/model.py's LanguageModel, configured as its training script does
(configs/utils.py update_sequence_mixer: 12 heads for the linear mixers, 1 for attention, max_position_embeddings
= seq_len; state mixer nn.Identity as in configs/config_mqar.yaml). Ours is rebased_bench.models.lm.LanguageModel
for the same mixer, d_model, seq_len and vocabulary 8192. Our weights, first moved off their init so that
LayerNorm gains and zero biases are told apart, are copied into the paper's model by an explicit name map
(every parameter of both mapped once, shapes equal). Both run in fp32 and eval mode (dropout off) on one
MQAR-like batch; the same cross-entropy on random labels gives the gradients. Per mixer and d_model it prints
parameter counts, max |logits difference| and max |gradient difference| over all parameters; exit status 1 when
one passes --logits-tol or --grads-tol, or a mixer cannot be mapped.

Stand-ins. The paper's requirements include packages this project does not use, and its linear-attention
kernels are Triton (CUDA only). These go into sys.modules before the paper's code is imported, and the output
names each one used:
- fla.ops.triton.rebased_fast.parallel_rebased, fla.ops.triton.parallel_based: on a CPU always, on CUDA when
  the paper's flash_linear_attention is not installed. Plain causal PyTorch of what the paper's kernels compute
  for its call (q, k, v, eps, use_scale=True, use_normalize=True): s = (q * D^-0.5) . k, D the feature dim;
  score s^2 (ReBased) or 1 + s + s^2 / 2 (Based); o_t = sum_{j<=t} score_tj v_j / (sum_{j<=t} score_tj + eps),
  eps the mixer's own (1e-12). It uses no rebased_bench code, which would make the check circular.
- torchvision.ops.StochasticDepth (torchvision missing): the identity; the paper builds it with drop_path 0.0,
  where it is the identity in every mode (asserted).
- einops.rearrange (einops missing): only the five patterns the paper's mixers use; any other raises.
- opt_einsum.contract (opt_einsum missing): torch.einsum; the paper's mixers import it at load time, and only
  feature maps their parallel mode does not call use it.
"""

import argparse
import contextlib
import importlib
import io
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

from rebased_bench.models.lm import LanguageModel, ModelConfig

VOCAB = 8192
MIXERS = ["rebased", "based", "conv_attention", "attention"]

# Our module path -> the paper's. Leaf names (weight, bias) are the same in both.
COMMON = {
    "embed": "backbone.embeddings.word_embeddings",  # the paper's lm_head is tied to it, as ours
    "pos_embed": "backbone.embeddings.position_embeddings",
    "norm": "backbone.ln_f",
}
MIXER_PARTS = {
    "base_conv": {"projection": "projection", "conv.conv": "conv.conv"},
    "attention": {"qkv": "Wqkv", "out_proj": "out_proj"},
    "based": {"q_proj": "proj_q", "k_proj": "proj_k", "v_proj": "proj_v", "out_proj": "proj_o"},
    "rebased": {"q_proj": "proj_q", "k_proj": "proj_k", "v_proj": "proj_v", "out_proj": "proj_o",
                "norm.q_norm": "ln_q", "norm.k_norm": "ln_k"},
}
# mixer -> the parts of layer 0 and layer 1. The paper wraps the Based recipe's two mixers in its Hybrid
# module, so their parameters sit one `.mixer` deeper; `attention` is MHA itself in both layers.
LAYERS = {
    "rebased": ("base_conv", "rebased"),
    "based": ("base_conv", "based"),
    "conv_attention": ("base_conv", "attention"),
    "attention": ("attention", "attention"),
}
HYBRID = {"rebased", "based", "conv_attention"}


def _causal_polynomial_kernel(score):
    """A stand-in for the paper's parallel_rebased / parallel_based Triton kernel with the given score."""

    def attend(q, k, v, eps, use_scale=True, use_normalize=True, return_both=False):
        # q, k: (batch, heads, seq_len, D); v: (batch, heads, seq_len, Dv), as the paper's mixers pass them
        scale = q.shape[-1] ** -0.5 if use_scale else 1.0
        s = (q * scale) @ k.transpose(-1, -2)  # (batch, heads, seq_len, seq_len)
        causal = torch.ones(s.shape[-1], s.shape[-1], dtype=torch.bool, device=s.device).tril()
        weights = score(s).masked_fill(~causal, 0.0)  # masked after the score: Based's 1 + ... is not 0 at s = 0
        o, z = weights @ v, weights.sum(-1)
        if return_both:
            return o, z
        return (o / (z[..., None] + eps) if use_normalize else o).to(q.dtype)

    return attend


def _no_fused_chunk(*args, **kwargs):
    raise NotImplementedError("fused_chunk_based stand-in: the paper's Based never calls it")


class _StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth at p = 0: the identity in training and eval alike."""

    def __init__(self, p, mode):
        super().__init__()
        assert p == 0.0, f"the StochasticDepth stand-in is the identity only at p = 0, got {p}"

    def forward(self, x):
        return x


# The only einops patterns the paper's mixers use (attention, based, rebased, convolution).
_PATTERNS = {
    "b l (h d) -> b h l d": lambda x, h: x.unflatten(-1, (h, -1)).transpose(1, 2),
    "b h l d -> b l (h d)": lambda x: x.transpose(1, 2).flatten(2),
    "... (three h d) -> ... three h d": lambda x, three, d: x.unflatten(-1, (three, -1, d)),
    "... h d -> ... (h d)": lambda x: x.flatten(-2),
    "b H -> b H 1": lambda x: x.unsqueeze(-1),
}


def _rearrange(x, pattern, **sizes):
    if pattern not in _PATTERNS:
        raise NotImplementedError(f"einops stand-in: pattern {pattern!r} is not one the paper's mixers use")
    return _PATTERNS[pattern](x, **sizes)


def _install(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _importable(name):
    try:
        importlib.import_module(name)
        return True
    except Exception:  # missing, or present but failing to load (a torchvision built for another torch)
        return False


def install_stand_ins(device):
    """Put stand-ins into sys.modules for what the paper's code imports but cannot run here; their names."""
    used = []
    real_kernels = device.type == "cuda" and _importable("fla.ops.triton.rebased_fast") and _importable(
        "fla.ops.triton.based")
    if not real_kernels:
        for name in [m for m in sys.modules if m == "fla" or m.startswith("fla.")]:
            del sys.modules[name]
        for name in ("fla", "fla.ops"):
            _install(name)
        _install("fla.ops.triton", parallel_based=_causal_polynomial_kernel(lambda s: 1 + s + 0.5 * s * s),
                 fused_chunk_based=_no_fused_chunk)
        _install("fla.ops.triton.rebased_fast", parallel_rebased=_causal_polynomial_kernel(lambda s: s * s))
        used.append("the paper's Triton kernels parallel_rebased / parallel_based -> plain causal PyTorch")
    if not _importable("torchvision.ops"):
        _install("torchvision")
        _install("torchvision.ops", StochasticDepth=_StochasticDepth)
        used.append("torchvision.ops.StochasticDepth -> identity (p = 0)")
    if not _importable("einops"):
        _install("einops", rearrange=_rearrange)
        used.append(f"einops.rearrange -> the {len(_PATTERNS)} patterns the paper uses")
    if not _importable("opt_einsum"):
        _install("opt_einsum", contract=lambda equation, *operands, **_: torch.einsum(equation, *operands))
        used.append("opt_einsum.contract -> torch.einsum (not called)")
    return used


def paper_model(mixer, d_model, seq_len):
    """The paper's LanguageModel for `mixer`, configured by its own update_sequence_mixer."""
    from configs.utils import update_sequence_mixer
    from src.config_pyr import DataConfig, FunctionConfig, ModuleConfig, TrainConfig
    from src.config_pyr import ModelConfig as PaperModelConfig
    from src.model import LanguageModel as PaperLanguageModel

    config = TrainConfig(
        data=DataConfig(builder=FunctionConfig(name="src.data.associative_recall.multiquery_ar"),
                        input_seq_len=seq_len, vocab_size=VOCAB),
        model=PaperModelConfig(sequence_mixer=ModuleConfig(name=mixer), d_model=d_model, vocab_size=VOCAB,
                               state_mixer=ModuleConfig(name="torch.nn.Identity")),
    )
    config = update_sequence_mixer(config)
    with contextlib.redirect_stdout(io.StringIO()):  # its mixers print their choices ("Using LayerNorm")
        return PaperLanguageModel(config.model)


def module_map(mixer):
    """Our module path -> the paper's, for every module that holds parameters."""
    modules = dict(COMMON)
    for i, part in enumerate(LAYERS[mixer]):
        theirs = f"backbone.layers.{i}.sequence_mixer" + (".mixer" if mixer in HYBRID else "")
        modules[f"blocks.{i}.norm1"] = f"backbone.layers.{i}.norm1"
        modules[f"blocks.{i}.norm2"] = f"backbone.layers.{i}.norm2"
        modules.update({f"blocks.{i}.mixer.{o}": f"{theirs}.{t}" for o, t in MIXER_PARTS[part].items()})
    return modules


def param_map(ours, paper, mixer):
    """Our parameter name -> the paper's; asserts every parameter of both is mapped once, with equal shapes."""
    modules = module_map(mixer)
    our_params, their_params = dict(ours.named_parameters()), dict(paper.named_parameters())
    mapping = {}
    for name in our_params:
        module, _, leaf = name.rpartition(".")
        assert module in modules, f"our {name} has no counterpart in the map"
        mapping[name] = f"{modules[module]}.{leaf}"
    targets = list(mapping.values())
    assert len(set(targets)) == len(targets), "two of our parameters map to one of the paper's"
    assert set(targets) == set(their_params), (
        f"unmapped: {sorted(set(their_params) - set(targets))}, missing in the paper's: "
        f"{sorted(set(targets) - set(their_params))}")
    for o, t in mapping.items():
        assert our_params[o].shape == their_params[t].shape, f"{o} {our_params[o].shape} vs {t} {their_params[t].shape}"
    return mapping


def mqar_batch(batch, seq_len, generator):
    """Keys in [1, 4096), values in [4096, 8192): seq_len/4 pairs, then zeros with each key once at an even offset."""
    pairs = seq_len // 4
    keys = torch.randint(1, VOCAB // 2, (batch, pairs), generator=generator)
    values = torch.randint(VOCAB // 2, VOCAB, (batch, pairs), generator=generator)
    tokens = torch.zeros(batch, seq_len, dtype=torch.long)
    tokens[:, :2 * pairs] = torch.stack([keys, values], -1).flatten(1)
    for row in range(batch):
        slots = torch.randperm((seq_len - 2 * pairs) // 2, generator=generator)[:pairs] * 2 + 2 * pairs
        tokens[row, slots] = keys[row]
    return tokens


def compare(mixer, d_model, seq_len, batch, device, seed):
    """Logits and gradients of both models with our weights; a result row."""
    torch.manual_seed(seed)
    ours = LanguageModel(ModelConfig(mixer, d_model, seq_len, vocab_size=VOCAB))
    with torch.no_grad():  # off the init, so that a swapped LayerNorm or bias would show
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    paper = paper_model(mixer, d_model, seq_len)
    row = {"mixer": mixer, "d_model": d_model, "ours": sum(p.numel() for p in ours.parameters()),
           "paper": sum(p.numel() for p in paper.parameters())}
    try:
        mapping = param_map(ours, paper, mixer)
    except AssertionError as exc:
        return {**row, "error": f"cannot map: {exc}"}
    their_params = dict(paper.named_parameters())
    with torch.no_grad():
        for o, p in ours.named_parameters():
            their_params[mapping[o]].copy_(p)
    generator = torch.Generator().manual_seed(seed)
    tokens = mqar_batch(batch, seq_len, generator).to(device)
    labels = torch.randint(0, VOCAB, (batch, seq_len), generator=generator).to(device)
    logits = []
    for model in (ours, paper):
        model.to(device=device, dtype=torch.float32).eval()
        out = model(tokens)
        F.cross_entropy(out.flatten(0, 1), labels.flatten()).backward()
        logits.append(out.detach())
    grads = [(p.grad - their_params[mapping[o]].grad).abs().max().item() for o, p in ours.named_parameters()]
    return {**row, "logits": (logits[0] - logits[1]).abs().max().item(), "grads": max(grads),
            "max_logit": logits[0].abs().max().item(),
            "max_grad": max(p.grad.abs().max().item() for p in ours.parameters())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-repo", required=True, help="a clone of github.com/corl-team/rebased")
    parser.add_argument("--mixers", default=",".join(MIXERS))
    parser.add_argument("--d-models", default="64,128")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logits-tol", type=float, default=1e-5)
    parser.add_argument("--grads-tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    # fp32 means fp32: the paper's kernels also disable TF32 (allow_tf32=False)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    used = install_stand_ins(device)
    sys.path.insert(0, args.paper_repo)  # its packages are `src` and `configs`
    print(f"paper's code: {args.paper_repo} (src/model.py LanguageModel, configs/utils.py update_sequence_mixer)")
    print("stand-ins: " + ("; ".join(used) if used else "none, the paper's code runs as is"))
    print(f"device {device}, fp32, eval mode, batch {args.batch} x seq_len {args.seq_len}, vocab {VOCAB}, "
          f"tolerances logits {args.logits_tol:g}, grads {args.grads_tol:g}\n")
    # the magnitudes (ours) beside the differences, to read them as relative errors
    print(f"{'mixer':<15} {'d_model':>7} {'params ours':>12} {'params paper':>12} {'max|logit|':>10} "
          f"{'max|dlogits|':>12} {'max|grad|':>9} {'max|dgrad|':>10}  result")
    failed = False
    for mixer in args.mixers.split(","):
        for d_model in (int(d) for d in args.d_models.split(",")):
            row = compare(mixer, d_model, args.seq_len, args.batch, device, args.seed)
            head = f"{mixer:<15} {d_model:>7} {row['ours']:>12,} {row['paper']:>12,}"
            if "error" in row:
                failed = True
                print(f"{head}  {row['error']}")
                continue
            ok = row["ours"] == row["paper"] and row["logits"] <= args.logits_tol and row["grads"] <= args.grads_tol
            failed |= not ok
            print(f"{head} {row['max_logit']:>10.2f} {row['logits']:>12.1e} {row['max_grad']:>9.1e} "
                  f"{row['grads']:>10.1e}  {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
