"""Fused Triton scans (Mamba's selective scan, RWKV-v4's WKV) against their sequential references: outputs and all
gradients, in fp64 on the same (rounded) inputs.

On CPU the kernels run through TRITON_INTERPRET=1 (conftest.py) on tiny shapes with small tiles (4 channels per
selective-scan program and 8-step chunks, 8 WKV channels per program), so odd widths cross several blocks and
odd lengths several chunks; on a GPU the same tests run natively with the GPU tiles, plus a larger case. Every
buffer the wrappers allocate is NaN-filled first (POISON): an element a kernel never writes, or a checkpoint or
scratch value it reads before writing it, fails the finiteness check.
"""

import importlib
import os

import pytest
import torch
import triton

import kernel_checks

from rebased_bench.kernels import launch
from rebased_bench.kernels.selective_scan import recurrent as scan_mod
from rebased_bench.kernels.selective_scan import recurrent_kernels as scan_kernels
from rebased_bench.kernels.wkv import recurrent as wkv_mod
from rebased_bench.kernels.wkv import recurrent_kernels as wkv_kernels

# @triton.jit reads TRITON_INTERPRET when the kernel module is imported: if something imported it before
# conftest.py set the variable, rebuild the kernels as interpreted ones (the wrappers pick them up by name)
if os.environ.get("TRITON_INTERPRET") == "1" and isinstance(scan_kernels.selective_scan_fwd_kernel,
                                                           triton.runtime.JITFunction):
    for module in (scan_kernels, scan_mod, wkv_kernels, wkv_mod):
        importlib.reload(module)
from rebased_bench.kernels import selective_scan_fn, selective_scan_reference, wkv_fn, wkv_reference  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# relative error bound on ||kernel - ref|| / ||ref||: the math is fp32 either way; bf16 gradients are rounded
REL_TOL = {"fp32": 2e-5, "bf16": 1e-2}
ABS_TOL = 1e-6  # rms bound where the reference is ~0 (at seq_len 1, dA and dw are exactly 0)


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(launch, "POISON", True)


def assert_rel_close(name, actual, ref, tol):
    kernel_checks.assert_rel_close(name, actual, ref, tol, ABS_TOL)


def check(kernel, reference, inputs, names, tol_name):
    """Kernel (on DEVICE) vs reference (fp64, CPU) for one random output gradient: outputs and every gradient."""
    ours = [x.to(DEVICE).requires_grad_() for x in inputs]
    refs = [x.detach().cpu().double().requires_grad_() for x in inputs]
    y = kernel(*ours)
    y_ref = reference(*refs)
    assert y.dtype == torch.float32
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.backward(dy.to(DEVICE))
    y_ref.backward(dy.double())
    assert_rel_close("y", y, y_ref, REL_TOL[tol_name])
    for name, x, x_ref in zip(names, ours, refs):
        assert x.grad.dtype == x.dtype, f"d{name}: dtype {x.grad.dtype} != {x.dtype}"
        ref = torch.zeros_like(x_ref) if x_ref.grad is None else x_ref.grad  # unused at seq_len 1: zero
        assert_rel_close(f"d{name}", x.grad, ref, REL_TOL[tol_name])


def scan_inputs(batch, seq_len, d_inner, d_state, dtype, fused="none", seed=0):
    """(u, delta, A, B, C) and, with fused="D" or "all", D and with "all" z and delta's bias too."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, seq_len, d_inner, generator=g)
    delta = torch.randn(batch, seq_len, d_inner, generator=g) * 2
    if fused == "none":
        delta = torch.nn.functional.softplus(delta)  # up to ~8; with softplus in the kernel, its raw input
    A = -torch.exp(torch.randn(d_inner, d_state, generator=g))
    B, C = torch.randn(2, batch, seq_len, d_state, generator=g)
    D, z, bias = torch.randn(d_inner, generator=g), torch.randn(batch, seq_len, d_inner, generator=g), \
        torch.randn(d_inner, generator=g) * 0.5
    # u, B, C, z in the tested dtype (bf16: as x_proj leaves them under autocast), the rest fp32
    inputs = (u.to(dtype), delta, A, B.to(dtype), C.to(dtype))
    return inputs + {"none": (), "D": (D,), "all": (D, z.to(dtype), bias)}[fused]


def fused_scan(scan, fused):
    """scan as a function of positional tensors only (check() differentiates them): D, z, delta_bias after C."""
    if fused == "none":
        return scan
    if fused == "D":  # softplus without a bias, D without a gate
        return lambda u, dt, A, B, C, D: scan(u, dt, A, B, C, D=D, delta_softplus=True)
    return lambda u, dt, A, B, C, D, z, bias: scan(u, dt, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)


def wkv_inputs(batch, seq_len, d, dtype, key_std=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = -torch.exp(torch.randn(d, generator=g) * 2)
    u = torch.randn(d, generator=g)
    k = torch.randn(batch, seq_len, d, generator=g) * key_std
    v = torch.randn(batch, seq_len, d, generator=g)
    return w, u, k.to(dtype), v.to(dtype)


# odd lengths on purpose (1, 17, 63 and 130 cross the chunks unevenly), odd widths (several channel blocks) and
# odd d_state (a masked state tile); mamba-ssm's fusions off, partly on (D, softplus) and all on (as Mamba runs
# it); the interpreter is slow, so long sequences run at batch 1
SCAN_CASES = [(2, 1, 5, 16, "fp32", "none"), (2, 17, 11, 3, "fp32", "none"), (1, 63, 5, 16, "fp32", "none"),
              (1, 130, 7, 16, "fp32", "none"), (2, 17, 5, 16, "bf16", "none"), (2, 17, 11, 16, "fp32", "all"),
              (1, 63, 5, 3, "bf16", "all"), (2, 17, 5, 4, "fp32", "D")]
if CUDA:
    SCAN_CASES += [(2, 300, 37, 16, "fp32", "none"), (2, 300, 256, 16, "bf16", "all")]
WKV_CASES = [(2, 1, 5, "fp32"), (2, 17, 19, "fp32"), (1, 63, 5, "fp32"), (1, 130, 7, "fp32"), (2, 17, 5, "bf16")] \
    + ([(2, 300, 70, "fp32"), (2, 300, 128, "bf16")] if CUDA else [])


@pytest.mark.parametrize("B,T,D,N,dtype,fused", SCAN_CASES,
                         ids=[f"B{b}-T{t}-D{d}-N{n}-{dt}-fused_{f}" for b, t, d, n, dt, f in SCAN_CASES])
def test_selective_scan_matches_reference(B, T, D, N, dtype, fused):
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    inputs = scan_inputs(B, T, D, N, DTYPES[dtype], fused)
    check(fused_scan(scan_mod.selective_scan_triton, fused), fused_scan(selective_scan_reference, fused), inputs,
          names[:len(inputs)], dtype)


@pytest.mark.parametrize("B,T,D,dtype", WKV_CASES, ids=[f"B{b}-T{t}-D{d}-{dt}" for b, t, d, dt in WKV_CASES])
def test_wkv_matches_reference(B, T, D, dtype):
    check(wkv_mod.wkv_triton, wkv_reference, wkv_inputs(B, T, D, DTYPES[dtype]), ["w", "u", "k", "v"], dtype)


def test_wkv_stays_finite_with_extreme_inputs():
    """Keys ~ +-300 (e^300 overflows fp32), bonus +-50, decays from e^-8 to e^30 per step (time_decay clamped)."""
    g = torch.Generator().manual_seed(2)
    time_decay = torch.tensor([-8.0, 0.0, 5.0, 10.0, 30.0])
    w, u = -torch.exp(time_decay), torch.tensor([-5.0, 0.0, 5.0, 50.0, -50.0])
    k, v = torch.randn(2, 30, 5, generator=g) * 100, torch.randn(2, 30, 5, generator=g)
    # fp32 rounding of exponents ~300 alone moves e^k by ~1e-5 relative: looser bounds than REL_TOL
    ours = [x.to(DEVICE).requires_grad_() for x in (w, u, k, v)]
    refs = [x.detach().cpu().double().requires_grad_() for x in (w, u, k, v)]
    y, y_ref = wkv_mod.wkv_triton(*ours), wkv_reference(*refs)
    y.sum().backward()
    y_ref.sum().backward()
    assert_rel_close("y", y, y_ref, 1e-5)
    for name, x, x_ref in zip("wukv", ours, refs):
        assert_rel_close(f"d{name}", x.grad, x_ref.grad, 1e-4)


@pytest.mark.parametrize("op", ["selective_scan", "wkv"])
def test_poison_detects_unwritten_output(op):
    """The checks above fail when a kernel skips outputs: launch the forward kernel without its last batch row."""
    if op == "selective_scan":
        u, delta, A, B, C = (x.to(DEVICE) for x in scan_inputs(2, 9, 5, 4, torch.float32))
        cfg = scan_mod.CONFIG
        y, hc = launch.empty(2, 9, 5, device=DEVICE), launch.empty(2, 2, 5, 4, device=DEVICE)
        scan_mod.selective_scan_fwd_kernel[(triton.cdiv(5, cfg["BD"]), 1)](
            u, delta, A, B, C, u, u, u, y, hc, 9, 2, 5, 4, **scan_mod._flags(None, None, None, False, 4, cfg))
        reference = selective_scan_reference(u.cpu().double(), delta.cpu().double(), A.cpu().double(),
                                             B.cpu().double(), C.cpu().double())
    else:
        w, u, k, v = (x.to(DEVICE) for x in wkv_inputs(2, 9, 5, torch.float32))
        cfg = wkv_mod.CONFIG
        y = launch.empty(2, 9, 5, device=DEVICE)
        wkv_mod.wkv_fwd_kernel[(triton.cdiv(5, cfg["BC"]), 1)](
            w, u, k, v, y, *k.stride()[:2], *v.stride()[:2], 9, 5, BC=cfg["BC"], STAGES=cfg["STAGES"],
            **wkv_mod._launch(cfg))
        reference = wkv_reference(*(x.cpu().double() for x in (w, u, k, v)))
    assert_rel_close("y[0]", y[:1], reference[:1], REL_TOL["fp32"])
    with pytest.raises(AssertionError, match="non-finite"):
        assert_rel_close("y", y, reference, REL_TOL["fp32"])


@pytest.mark.skipif(not CUDA, reason="dispatch sends CPU tensors to the chunked PyTorch paths")
def test_dispatch_uses_the_kernels_on_cuda():
    x = [t.cuda() for t in scan_inputs(2, 64, 32, 16, torch.bfloat16)]
    torch.testing.assert_close(selective_scan_fn(*x), scan_mod.selective_scan_triton(*x), rtol=0, atol=0)
    x = [t.cuda() for t in wkv_inputs(2, 64, 32, torch.bfloat16)]
    torch.testing.assert_close(wkv_fn(*x), wkv_mod.wkv_triton(*x), rtol=0, atol=0)


SCAN_LAUNCHES = [{"STAGES": 3}, {"STAGES": 2, "BD": 8, "CHUNK": 16},
                 {"STAGES": 3, "BD": 32, "CHUNK": 64, "num_warps": 2}]
WKV_LAUNCHES = [{"STAGES": 3}, {"STAGES": 2, "BC": 16}, {"STAGES": 3, "BC": 64, "num_warps": 2}]


@pytest.mark.skipif(not CUDA, reason="launch configs (software pipelining, warps) only exist on the GPU")
@pytest.mark.parametrize("i", range(3))
def test_other_launch_configs_match_reference(i):
    """The configs the benchmark sweeps (pipelined loads, other tiles and warps) compute the same."""
    scan = fused_scan(lambda *x, **kw: scan_mod.selective_scan_triton(*x, **kw, config=SCAN_LAUNCHES[i]), "all")
    check(scan, fused_scan(selective_scan_reference, "all"), scan_inputs(2, 300, 37, 16, torch.float32, "all"),
          ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"], "fp32")
    check(lambda *x: wkv_mod.wkv_triton(*x, config=WKV_LAUNCHES[i]), wkv_reference,
          wkv_inputs(2, 300, 70, torch.float32), ["w", "u", "k", "v"], "fp32")
