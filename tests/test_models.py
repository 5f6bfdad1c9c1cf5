import pytest
import torch
import torch.nn.functional as F

from rebased_bench.errors import BenchError
from rebased_bench.kernels import naive_parallel_rebased
from rebased_bench.models.lm import LanguageModel, ModelConfig
from rebased_bench.models.mixers import LinearAttention, ShortConv
from rebased_bench.models.registry import MIXERS, resolve


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_every_mixer_keeps_the_shape_and_is_causal(mixer):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer, 24, 32, vocab_size=64)).eval()
    x = torch.randint(0, 64, (2, 32))
    y = x.clone()
    y[:, 20:] = torch.randint(0, 64, (2, 12))
    hx, hy = model.hidden(x), model.hidden(y)
    assert hx.shape == (2, 32, 24)
    torch.testing.assert_close(hx[:, :20], hy[:, :20])
    assert not torch.allclose(hx[:, 20:], hy[:, 20:])


@pytest.mark.parametrize("d_model, value_head_dim", [(64, 5), (128, 10), (256, 21), (512, 42)])
def test_value_head_dim_quirk_is_the_faithful_default(d_model, value_head_dim):
    layer = resolve("rebased")(d_model, 1)
    assert layer.value_head_dim == value_head_dim
    assert resolve("rebased")(d_model, 1, value_dim_quirk=False).value_head_dim * 12 >= d_model


def test_rebased_layer_is_layernorm_then_squared_score():
    torch.manual_seed(0)
    layer = LinearAttention(48, "rebased", num_heads=3, feature_dim=4)
    x = torch.randn(2, 9, 48)
    q = torch.nn.functional.layer_norm(layer.q_proj(x), (12,), layer.norm.q_norm.weight, layer.norm.q_norm.bias)
    k = torch.nn.functional.layer_norm(layer.k_proj(x), (12,), layer.norm.k_norm.weight, layer.norm.k_norm.bias)
    v = layer.v_proj(x).view(2, 9, 3, -1)
    expected = layer.out_proj(naive_parallel_rebased(q.view(2, 9, 3, 4), k.view(2, 9, 3, 4), v).flatten(2))
    torch.testing.assert_close(layer(x), expected)


def test_unknown_mixers_are_bench_errors():
    with pytest.raises(BenchError, match="unknown mixer"):
        resolve("transformer")
    with pytest.raises(BenchError, match="cannot import"):
        resolve("no_such_module:Mixer")
    with pytest.raises(BenchError, match="not an nn.Module"):
        resolve("math:sqrt")


def test_short_conv_is_the_causal_depthwise_conv1d():
    torch.manual_seed(0)
    conv, x = ShortConv(8, kernel_size=3), torch.randn(2, 11, 8, requires_grad=True)
    reference = F.conv1d(x.transpose(1, 2), conv.conv.weight, conv.conv.bias, padding=2, groups=8)[..., :11]
    y = conv(x)
    torch.testing.assert_close(y, reference.transpose(1, 2))
    grads = torch.autograd.grad(y.square().sum(), (x, conv.conv.weight, conv.conv.bias))
    reference_grads = torch.autograd.grad(reference.square().sum(), (x, conv.conv.weight, conv.conv.bias))
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad)
    assert not torch.allclose(y[:, 0], conv(x.roll(1, dims=1))[:, 0])  # the first output sees the first token
