"""The trainer benchmark's CPU smoke mode runs as docs/trainer.md and the script's docstring show it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_trainer_benchmark_smoke_mode_writes_a_row_per_variant(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "trainer_step_bench.py"), "--device", "cpu", "--cases",
               "rebased:16:64", "--batch", "4", "--repeats", "2", "--precisions", "fp32", "--variants",
               "eager_whole,paper,loop", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    assert set(bench["env"]) >= {"gpu", "torch", "git_commit", "git_dirty"}
    assert [row["variant"] for row in bench["rows"]] == ["eager_whole", "paper", "loop"]
    for row in bench["rows"]:
        assert "error" not in row, row
        assert row["micro_batch"] == 4 and 0 < row["min_ms"] <= row["median_ms"]
    assert "| rebased | 16 | 64 | fp32 | loop | 4 |" in result.stdout
