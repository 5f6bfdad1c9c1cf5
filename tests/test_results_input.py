"""`show` and `plot` on input they cannot use: a file of rows that are not ours is one line on stderr and
skipped, an --out that takes no figures one line `error: ...` and exit code 2, never a traceback."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.kinds import mqar
from rebased_bench.store import to_table

RESULTS = Path(__file__).resolve().parent.parent / "results"
ROW = {"kind": "mqar", "suite": "s", "case_id": "c0", "status": "ok", "started_at": pd.Timestamp("2026-01-01", tz="UTC"),
       "mixer": "rebased", "d_model": 64, "seq_len": 64, "lr": 1e-3, "seed": 0, "epochs": 2, "train_examples": 100,
       "test_examples": 10, "batch_size": 8, "accuracy": 0.5}


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def test_show_and_plot_skip_files_that_are_not_ours_with_one_line_each(tmp_path):
    (tmp_path / "mqar").mkdir()
    pq.write_table(to_table(ROW, mqar.KIND.schema), tmp_path / "mqar" / "good.parquet")
    pq.write_table(pa.Table.from_pylist([{**ROW, "accuracy": "high"}]), tmp_path / "mqar" / "bad.parquet")
    pq.write_table(pa.table({"op": ["fwd"], "ms": [1.0]}), tmp_path / "bench.parquet")
    pq.write_table(pa.table({"kind": ["nope"], "status": ["ok"]}), tmp_path / "other.parquet")
    (tmp_path / "_private").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "_private" / "skipped.parquet")  # skipped as Parquet readers do
    for args in (["show", tmp_path], ["plot", tmp_path, "--out", tmp_path / "figures"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        warnings = result.stderr.strip().splitlines()
        assert len(warnings) == 3 and "_private" not in result.stderr
        assert "bench.parquet: no 'kind' column" in warnings[0]
        assert "bad.parquet: column 'accuracy' holds string, not double" in warnings[1]
        assert "other.parquet: rows of kind nope; ours are mqar, kernels, ablate, iou" in warnings[2]
    (tmp_path / "mqar" / "good.parquet").unlink()
    result = invoke("show", tmp_path)
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_plot_out_that_takes_no_figures_is_one_line_and_exit_code_2(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):
        result = invoke("plot", RESULTS / "ablate-quick", "--out", out)
        assert result.exit_code == 2 and result.stderr.startswith("error: --out: cannot write figures")
        assert len(result.stderr.strip().splitlines()) == 1

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", read_only)  # as root, a read-only folder would still take files
    result = invoke("plot", RESULTS / "ablate-quick", "--out", tmp_path / "figures")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: --out: cannot write figures to {tmp_path / 'figures'}: Permission denied")
