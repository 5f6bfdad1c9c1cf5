"""Mixers by name, and user mixers by import path (`my_pkg.my_module:MyMixer`)."""

import importlib

from torch import nn

from ..errors import BenchError
from .mamba import Mamba
from .mixers import BaseConv, LinearAttention, SelfAttention
from .rwkv import RWKVTimeMixer

# name -> layer factory (d_model, layer_idx, value_dim_quirk) -> nn.Module
MIXERS = {}


def register(name):
    """Register a layer factory under `name`."""
    def wrap(factory):
        MIXERS[name] = factory
        return factory
    return wrap


def based_recipe(make_mixer):
    """Zoology's 2-layer recipe: BaseConv in layer 0, the sequence mixer in every later layer."""
    def factory(d_model, layer_idx, value_dim_quirk=True):
        return BaseConv(d_model) if layer_idx == 0 else make_mixer(d_model, value_dim_quirk)
    return factory


def _linear(feature_map):
    def make(d_model, value_dim_quirk):
        # Without the quirk the value head dim rounds up, so the value path is never narrower than d_model.
        return LinearAttention(d_model, feature_map, value_head_dim=None if value_dim_quirk else -(-d_model // 12))
    return make


# The feature maps of LinearAttention (FEATURE_MAPS) in the paper's ablation-table order, simplest first, then
# flash-linear-attention's shared-γ/β ReBased and Based: each is a mixer of every suite and a variant of `ablate`.
VARIANTS = ("x2", "gamma_x2", "affine_x2", "norm_x2", "rebased", "rebased_shared", "based")

register("attention")(lambda d_model, layer_idx, value_dim_quirk=True: SelfAttention(d_model, num_heads=1))
register("conv_attention")(based_recipe(lambda d_model, _: SelfAttention(d_model, num_heads=1)))
for _variant in VARIANTS:
    register(_variant)(based_recipe(_linear(_variant)))
# The paper's other baselines replace the recipe: the mixer in every layer (2 Mamba blocks, 2 RWKV time mixers).
register("mamba")(lambda d_model, layer_idx, value_dim_quirk=True: Mamba(d_model))
register("rwkv")(lambda d_model, layer_idx, value_dim_quirk=True: RWKVTimeMixer(d_model, layer_idx))


def is_import_path(name: str) -> bool:
    return ":" in name


def resolve(name: str):
    """Layer factory for a registered name or a `module:Class` import path; BenchError when unknown."""
    if name in MIXERS:
        return MIXERS[name]
    if not is_import_path(name):
        raise BenchError(f"unknown mixer {name!r}; built-in: {', '.join(sorted(MIXERS))}; or give module:Class")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise BenchError(f"{name!r} is not module:Class (e.g. my_pkg.my_module:MyMixer)")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # not found, or the module fails while it loads (a SyntaxError, its own errors)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise BenchError(f"cannot import mixer {name!r}: {reason}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BenchError(f"mixer {name!r} is not an nn.Module class")
    return based_recipe(lambda d_model, _: cls(d_model))
