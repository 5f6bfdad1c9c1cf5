"""The `kernels` suite through the CLI on CPU: naive and SDPA run tiny shapes, GPU and fla providers skip."""

import json

import pandas as pd
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.timing import time_op

TINY = ["--seq-lens", "16,32", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_quick_suite_rows_ok_and_skipped_with_reasons(tmp_path):
    result = invoke("kernels", "--providers", "naive,sdpa,chunk,fla_parallel_rebased", "--modes", "fwd,fwd_bwd",
                    *TINY, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "kernels")
    assert len(rows) == 16
    ok = rows[rows["status"] == "ok"]
    assert set(ok["provider"]) == {"naive", "sdpa"} and len(ok) == 8
    for column in ("provider", "mode", "batch", "seq_len", "heads", "d", "dv", "dtype", "median_ms", "p20_ms",
                   "p80_ms", "tflops", "tokens_per_second", "rel_err", "git_commit", "gpu_name", "torch_version"):
        assert column in rows
    assert (ok["p20_ms"] <= ok["median_ms"]).all() and (ok["median_ms"] <= ok["p80_ms"]).all()
    assert (ok["rel_err"] < 1e-5).all() and (ok["tflops"] > 0).all()
    assert (ok[ok["mode"] == "fwd_bwd"]["rel_err_grad"] < 1e-4).all()
    assert (ok["batch"] * ok["seq_len"] == 256).all()  # kernels-quick: 256 tokens per call
    assert (ok[ok["provider"] == "sdpa"]["d"] == ok["dv"].iloc[0]).all()  # softmax at head dim dv
    skipped = rows[rows["status"] == "skipped"]
    assert set(skipped["provider"]) == {"chunk", "fla_parallel_rebased"}
    assert skipped["error"].str.contains("needs a CUDA GPU").all()
    assert "skipped: chunk: needs a CUDA GPU" in result.stdout
    before_the_sweep = result.stderr.split("kernels-quick")[0]  # said before the first case runs
    assert "cannot time chunk: needs a CUDA GPU" in before_the_sweep
    assert "cannot time fla_parallel_rebased" in before_the_sweep and "cannot time naive" not in before_the_sweep
    assert "repeat_median_ms" in ok and "timing_flag" in ok
    again = invoke("kernels", "--providers", "naive,sdpa,chunk,fla_parallel_rebased", "--modes", "fwd,fwd_bwd",
                   *TINY, "--out", tmp_path)
    assert again.exit_code == 0 and "16 of 16 cases already done" in again.output


def test_dry_run_expands_batch_and_default_suite():
    result = invoke("kernels", "--providers", "naive", "--batch", "1..4", "--seq-lens", "64", "--modes", "fwd",
                    "--device", "cpu", "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    grid = json.loads(result.stdout)
    assert [row["batch"] for row in grid] == [1, 2, 4] and {row["tokens"] for row in grid} == {64, 128, 256}
    full = invoke("kernels", "--device", "cpu", "--dry-run", "--format", "json")
    assert full.exit_code == 0 and len(json.loads(full.stdout)) == 40  # kernels-quick on CPU


def test_bad_input_is_one_line(tmp_path):
    for args, message in ((["--providers", "nope"], "provider: expected one of 'dispatch'"),
                          (["--modes", "bwd"], "mode: expected one of 'fwd', 'fwd_bwd', got 'bwd'"),
                          (["--seq-lens", "64..32"], "empty range")):
        result = invoke("kernels", *args, "--device", "cpu", "--out", tmp_path)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_profile_writes_a_trace_and_a_kernel_table(tmp_path):
    result = invoke("kernels", "--providers", "naive", "--modes", "fwd", "--seq-lens", "16", "--device", "cpu",
                    "--profile", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    row = pd.read_parquet(tmp_path / "kernels").iloc[0]
    trace = json.loads(open(row["trace_path"]).read())
    assert row["trace_path"].startswith(str(tmp_path / "traces" / "kernels")) and trace["traceEvents"]
    assert "top CPU ops" in result.output


def test_time_op_on_cpu_orders_its_quantiles():
    t = time_op(lambda: sum(range(1000)), rep_ms=5, device="cpu")
    assert 0 < t["p20_ms"] <= t["median_ms"] <= t["p80_ms"]


def test_unsteady_timings_are_flagged_in_the_row_and_the_table():
    from rebased_bench.kinds.kernels import KIND, timing_flag
    steady = {"median_ms": 1.0, "p20_ms": 0.95, "p80_ms": 1.1}
    assert timing_flag(steady, 1.05) is None
    assert "p80/p20 3.00x" in timing_flag({**steady, "p20_ms": 0.5, "p80_ms": 1.5}, 1.0)
    assert "repeat differs 2.00x" in timing_flag(steady, 2.0)
    rows = pd.DataFrame([{"kind": "kernels", "suite": "s", "status": "ok", "case_id": str(i), "provider": "naive",
                          "mode": "fwd", "seq_len": 64 * (i + 1), "batch": 1, "tokens": 64 * (i + 1), "heads": 2,
                          "d": 16, "dv": 16, "dtype": "fp32", "median_ms": 1.0, "timing_flag": flag, "error": None}
                         for i, flag in enumerate([None, "p80/p20 3.00x > 1.5x"])])
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(KIND.summary(rows))
    text = console.export_text()
    import re
    assert re.findall(r"\d !", text) == ["0 !"] and "1.000 !" in text and "unsteady timing" in text
