"""chunk_rebased (Triton, chunked linear form) against the naive references, the parallel kernel, itself
across state hand-offs, and one-token decoding. On CPU the kernels run through TRITON_INTERPRET=1
(conftest.py) on tiny shapes with 16-token chunks; on a GPU the same tests run natively, bf16 included.
"""

import importlib
import os

import pytest
import torch
import triton

from rebased_bench.kernels.polynomial.naive import naive_parallel_rebased
from rebased_bench.kernels.rebased_chunk import chunk as chunk_mod
from rebased_bench.kernels.rebased_chunk import chunk_kernels

# @triton.jit reads TRITON_INTERPRET when the kernel module is imported: if something imported it before
# conftest.py set the variable, rebuild the kernels as interpreted ones (chunk.py picks them up by name)
if os.environ.get("TRITON_INTERPRET") == "1" and isinstance(chunk_kernels.chunk_rebased_state_kernel, triton.runtime.JITFunction):
    importlib.reload(chunk_kernels)
    importlib.reload(chunk_mod)
from rebased_bench.kernels.rebased_chunk import chunk_rebased, naive_chunk_rebased, naive_recurrent_rebased, rebased_step

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# triton 3.9's interpreter mis-computes tl.dot on bf16 operands: bf16 is checked on the GPU only
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
# relative error bound per dtype, vs an fp32 reference on the same (rounded) inputs
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2.5e-2}
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
BT = 16 if not CUDA else 64  # chunk length: small on CPU so short sequences cross several chunks


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the output gradients drawn with randn_like


def rel_err(x, ref):
    # floor the norm at an RMS of 1e-3: at seq_len 1, dq and dk are exactly zero. (Token 0 is a hard case for
    # every dq, dk: its exact gradient do.(v_0 - o_0) ... is 0 and 1/s_00 amplifies whatever rounding is left.)
    floor = 1e-3 * ref.numel() ** 0.5
    return ((x.double() - ref.double()).norm() / max(ref.double().norm().item(), floor)).item()


def assert_close(name, x, ref, tol):
    assert torch.isfinite(x).all(), f"{name}: non-finite values (unwritten or overflow)"
    err = rel_err(x, ref)
    assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.1e}"


def inputs(b, t, h, d, dv, dtype, qk_dtype=None, seed=0):
    """Fresh random q, k, v leaves on DEVICE (never zeros); q, k may have their own dtype (autocast)."""
    g = torch.Generator().manual_seed(seed)
    qk_dtype = qk_dtype or dtype
    q, k = (torch.randn(b, t, h, d, generator=g).to(DEVICE, qk_dtype) for _ in range(2))
    v = torch.randn(b, t, h, dv, generator=g).to(DEVICE, dtype)
    return [x.requires_grad_() for x in (q, k, v)]


def reference(q, k, v, do):
    """fp32 naive parallel output and (dq, dk, dv) on upcast copies of the same inputs."""
    qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
    o = naive_parallel_rebased(qf, kf, vf)
    return o, torch.autograd.grad(o, (qf, kf, vf), do.float())


def grads(o, xs, do):
    return torch.autograd.grad(o, xs, do)


CASES = [  # (batch, seq_len, heads, d, dv, chunks_per_segment): odd lengths, d and dv not powers of 2
    (1, 1, 1, 16, 16, None),
    (1, 17, 2, 5, 5, 1),
    (2, 63, 1, 16, 64, 2),
    (1, 63, 1, 32, 16, None),
    (1, 130, 2, 16, 5, 3),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=NAMES.get)
@pytest.mark.parametrize("b,t,h,d,dv,cps", CASES, ids=[f"B{c[0]}-T{c[1]}-H{c[2]}-D{c[3]}-V{c[4]}-S{c[5]}" for c in CASES])
def test_chunk_matches_naive(b, t, h, d, dv, cps, dtype):
    q, k, v = inputs(b, t, h, d, dv, dtype)
    o, _ = chunk_rebased(q, k, v, chunk_size=BT, chunks_per_segment=cps)
    assert o.dtype == dtype and o.shape == (b, t, h, dv)
    do = torch.randn_like(o)
    ref, ref_grads = reference(q, k, v, do)
    assert_close("o", o, ref, TOL[dtype])
    for name, g, rg in zip("qkv", grads(o, (q, k, v), do), ref_grads):
        assert g.dtype == dtype
        assert_close(f"d{name}", g, rg, 2 * TOL[dtype])


def test_mixed_dtypes():
    # as under autocast after an fp32 LayerNorm: fp32 q, k with 16-bit v; output in v's dtype
    dtype = torch.bfloat16 if CUDA else torch.float16
    q, k, v = inputs(1, 40, 2, 16, 16, dtype, qk_dtype=torch.float32)
    o, _ = chunk_rebased(q, k, v, chunk_size=BT)
    do = torch.randn_like(o)
    ref, ref_grads = reference(q, k, v, do)
    assert o.dtype == dtype
    assert_close("o", o, ref, TOL[dtype])
    for name, g, rg in zip("qkv", grads(o, (q, k, v), do), ref_grads):
        assert_close(f"d{name}", g, rg, 2 * TOL[dtype])


def test_poisoned_buffers_are_all_written(monkeypatch):
    # every buffer the kernels allocate starts as NaN; a single element left unwritten (or read before
    # written) surfaces as NaN in o or a gradient
    allocated = []

    def recording_empty(*shape, **kw):
        x = torch.empty(*shape, **kw).fill_(float("nan"))
        allocated.append(x)
        return x

    monkeypatch.setattr(chunk_mod, "empty", recording_empty)
    q, k, v = inputs(2, 37, 2, 8, 24, torch.float32, seed=1)
    o, _ = chunk_rebased(q, k, v, chunk_size=16, chunks_per_segment=1)
    do = torch.randn_like(o)
    dq, dk, dv = grads(o, (q, k, v), do)
    # the results are the poisoned buffers themselves, so the checks below see any hole in them
    ptrs = {x.data_ptr() for x in allocated}
    assert {o.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr()} <= ptrs
    ref, ref_grads = reference(q, k, v, do)
    assert_close("o", o, ref, TOL[torch.float32])
    for name, g, rg in zip("qkv", (dq, dk, dv), ref_grads):
        assert_close(f"d{name}", g, rg, TOL[torch.float32])


def test_chunked_equals_parallel_equals_naive():
    parallel = pytest.importorskip("rebased_bench.kernels.polynomial.parallel")
    q, k, v = inputs(1, 50, 2, 16, 16, torch.float32, seed=2)
    do = torch.randn(1, 50, 2, 16, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    oc, _ = chunk_rebased(q, k, v, chunk_size=BT)
    op = parallel.parallel_rebased(q, k, v)
    on, _ = naive_chunk_rebased(q, k, v, chunk_size=7)
    ref, ref_grads = reference(q, k, v, do)
    assert_close("chunk", oc, ref, TOL[torch.float32])
    assert_close("naive_chunk", on, ref, TOL[torch.float32])
    assert_close("chunk vs parallel", oc, op, 1e-3)  # the parallel kernel's fp32 dots may run in tf32
    for name, gc, gp, rg in zip("qkv", grads(oc, (q, k, v), do), grads(op, (q, k, v), do), ref_grads):
        assert_close(f"chunk d{name}", gc, rg, TOL[torch.float32])
        assert_close(f"chunk vs parallel d{name}", gc, gp, 1e-3)


@pytest.mark.parametrize("split", [16, 23])
def test_state_carries_across_calls(split):
    # two calls with the state handed over == one call on the concatenation (outputs, state, gradients)
    q, k, v = inputs(2, 41, 2, 8, 16, torch.float32, seed=3)
    o_full, (S_full, z_full) = chunk_rebased(q, k, v, output_final_state=True, chunk_size=BT)
    o1, state = chunk_rebased(q[:, :split], k[:, :split], v[:, :split], output_final_state=True, chunk_size=BT)
    o2, (S2, z2) = chunk_rebased(q[:, split:], k[:, split:], v[:, split:], initial_state=state, output_final_state=True, chunk_size=BT)
    o_cat = torch.cat([o1, o2], 1)
    assert_close("o", o_cat, o_full, 1e-5)
    assert_close("S", S2, S_full, 1e-5)
    assert_close("z", z2, z_full, 1e-5)
    do = torch.randn_like(o_full)
    for g_two, g_one in zip(grads(o_cat, (q, k, v), do), grads(o_full, (q, k, v), do)):
        assert_close("grad", g_two, g_one, 1e-5)


def test_initial_and_final_state_gradients():
    # gradients into a given initial state and from the returned final state, vs the naive chunked autograd
    q, k, v = inputs(1, 37, 2, 5, 7, torch.float32, seed=4)
    g = torch.Generator().manual_seed(5)
    S0 = torch.randn(1, 2, 15, 7, generator=g).to(DEVICE).requires_grad_()
    z0 = (torch.rand(1, 2, 15, generator=g) * 3).to(DEVICE).requires_grad_()
    o, (St, zt) = chunk_rebased(q, k, v, initial_state=(S0, z0), output_final_state=True, chunk_size=BT, chunks_per_segment=1)
    ro, (rS, rz) = naive_chunk_rebased(q, k, v, initial_state=(S0, z0), output_final_state=True)
    for name, x, ref in (("o", o, ro), ("S", St, rS), ("z", zt, rz)):
        assert_close(name, x, ref, 1e-5)
    cot = [torch.randn_like(x) for x in (o, St, zt)]
    leaves = (q, k, v, S0, z0)
    for name, x, ref in zip(("dq", "dk", "dv", "dS0", "dz0"), torch.autograd.grad((o, St, zt), leaves, cot),
                            torch.autograd.grad((ro, rS, rz), leaves, cot)):
        assert_close(name, x, ref, 1e-4)


def test_decoding_continues_the_kernel_state():
    # prefill with the kernel, then decode token by token: every row equals the parallel form
    q, k, v = inputs(2, 29, 3, 16, 8, torch.float32, seed=6)
    ref = naive_parallel_rebased(q, k, v).detach()
    n = 20
    o_pre, state = chunk_rebased(q[:, :n], k[:, :n], v[:, :n], output_final_state=True, chunk_size=BT)
    rows = [o_pre.detach()]
    with torch.no_grad():
        for i in range(n, q.shape[1]):
            o_t, state = rebased_step(q[:, i], k[:, i], v[:, i], state)
            rows.append(o_t[:, None])
    assert_close("decoded", torch.cat(rows, 1), ref, 1e-5)


def test_naive_references_agree():
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 45, 3, n, generator=g, dtype=torch.float64) for n in (6, 6, 10))
    ref = naive_parallel_rebased(q, k, v)
    step_all, _ = naive_recurrent_rebased(q, k, v)
    chunked, _ = naive_chunk_rebased(q, k, v, chunk_size=8)
    # 4-d (batch, 1, heads, d) inputs give (batch, 1, heads, dv): the last row of the parallel form
    _, state = naive_chunk_rebased(q[:, :-1], k[:, :-1], v[:, :-1], output_final_state=True)
    last, _ = rebased_step(q[:, -1:], k[:, -1:], v[:, -1:], state)
    assert_close("recurrent", step_all, ref, 1e-5)
    assert_close("chunked", chunked, ref, 1e-5)
    assert last.shape == (2, 1, 3, 10)
    assert_close("last row", last, ref[:, -1:], 1e-5)


@pytest.mark.skipif(not CUDA, reason="long sequences and default tiles: GPU only")
@pytest.mark.parametrize("t", [1000, 4099])
def test_long_sequences_bf16_default_tiles(t):
    # default 64-token chunks and the automatic segment split; large-norm inputs stay finite
    q, k, v = inputs(1, t, 4, 16, 64, torch.bfloat16, seed=8)
    with torch.no_grad():
        q.mul_(3), k.mul_(3)
    o, _ = chunk_rebased(q, k, v)
    do = torch.randn_like(o)
    ref, ref_grads = reference(q, k, v, do)
    assert_close("o", o, ref, TOL[torch.bfloat16])
    for name, g, rg in zip("qkv", grads(o, (q, k, v), do), ref_grads):
        assert_close(f"d{name}", g, rg, 2 * TOL[torch.bfloat16])


def test_dispatch_picks_by_length():
    from rebased_bench.kernels.rebased_chunk import dispatch

    for training, thr in ((False, dispatch.CHUNK_MIN_SEQ_LEN_FWD), (True, dispatch.CHUNK_MIN_SEQ_LEN_TRAIN)):
        assert dispatch.use_chunked(thr, 16, training) and not dispatch.use_chunked(thr - 1, 16, training)
        assert not dispatch.use_chunked(10 * thr, dispatch.CHUNK_MAX_D + 1, training)
        # too little work at this batch x heads: the chunked path would sit on its launch floor
        small = int(dispatch.CHUNK_MIN_WORK // (4 * thr) ** 2)
        assert dispatch.use_chunked(4 * thr, 16, training, small + 1) and not dispatch.use_chunked(4 * thr, 16, training, max(small - 1, 0))
    q, k, v = inputs(1, 33, 2, 16, 8, torch.float32, seed=10)
    o = dispatch.rebased_attention(q, k, v)
    # on a GPU this short sequence goes to the parallel kernel, whose fp32 dots may run in tf32
    assert_close("dispatch", o, naive_parallel_rebased(q, k, v), 1e-3 if CUDA else 2e-4)


@pytest.mark.skipif(not CUDA, reason="both Triton paths of the dispatch: GPU only")
def test_dispatch_both_paths_on_gpu(monkeypatch):
    from rebased_bench.kernels.rebased_chunk import dispatch

    q, k, v = inputs(2, 300, 4, 16, 64, torch.bfloat16, seed=11)
    ref = naive_parallel_rebased(q, k, v)
    for thr in (1, 10**9):  # everything chunked, everything parallel
        monkeypatch.setattr(dispatch, "CHUNK_MIN_SEQ_LEN_FWD", thr)
        monkeypatch.setattr(dispatch, "CHUNK_MIN_SEQ_LEN_TRAIN", thr)
        assert_close(f"dispatch thr={thr}", dispatch.rebased_attention(q, k, v), ref, TOL[torch.bfloat16])
