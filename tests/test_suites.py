"""Suite files and flags are checked against the kind's typed config before anything runs: each problem is one line
naming the file (or the command line), the field and what it expected, with exit code 2."""

import json
from dataclasses import dataclass, field

import pytest
import torch
from typer.testing import CliRunner

from rebased_bench.cli import app
from rebased_bench.config import IGNORED, WHEN_SET, Config, Count, FieldError, Positive
from rebased_bench.kinds import KINDS
from rebased_bench.kinds.mqar import MqarCase
from rebased_bench.suite import load_suite, suite_files

GOOD = """kind = "mqar"
[grid]
mixer = ["rebased"]
d_model = [16]
seq_len = "32..64"
lr = [3e-3]
seed = [0]
[fixed]
num_kv_pairs = 4
epochs = 1
train_examples = 64
test_examples = 16
batch_size = 16
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def suite_file(tmp_path, text: str | bytes, name="suite.toml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def assert_one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]


def test_a_good_suite_plans_its_cases(tmp_path):
    result = invoke("mqar", "--suite", suite_file(tmp_path, GOOD), "--dry-run", "--format", "json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert [row["seq_len"] for row in json.loads(result.stdout)] == [32, 64]


@pytest.mark.parametrize("change, field_name, expected", [
    (('d_model = [16]', 'd_model = "sixteen"'), "d_model", "'sixteen' is not an integer"),
    ((GOOD[GOOD.index("[grid]"):GOOD.index("[fixed]")], 'grid = "str"\n'), "grid", "expected a table of axes"),
    (('d_model = [16]', 'd_model = [[16]]'), "d_model", "expected a 64-bit integer >= 1, got [16]"),
    (('lr = [3e-3]\n', ''), "lr", "missing (expected a finite number > 0)"),
    (('epochs = 1', 'epoch = 1'), "epoch", "unknown field; mqar suites take mixer, d_model"),
    (('epochs = 1', 'epochs = true'), "epochs", "expected a 64-bit integer >= 1, got True"),
    (('seed = [0]', 'seed = []'), "seed", "an empty grid axis"),
    (('epochs = 1', 'epochs = 0'), "epochs", "expected a 64-bit integer >= 1, got 0"),
    (('lr = [3e-3]', 'lr = [nan]'), "lr", "expected a finite number > 0, got nan"),
    (('lr = [3e-3]', 'lr = [inf]'), "lr", "expected a finite number > 0, got inf"),
    (('lr = [3e-3]', 'lr = [0.0]'), "lr", "expected a finite number > 0, got 0.0"),
    (('lr = [3e-3]', 'lr = [-1e-3]'), "lr", "expected a finite number > 0, got -0.001"),
    (('batch_size = 16', 'batch_size = 9223372036854775807\nmicro_batch_size = -1'), "micro_batch_size",
     "expected a 64-bit integer >= 0, got -1"),
    (('[fixed]\n', '[fixed]\nprecision = "fp16"\n'), "precision", "expected one of 'auto', 'fp32', 'bf16'"),
    (('mixer = ["rebased"]', 'mixer = ["transformer"]'), "mixer", "unknown mixer 'transformer'"),
    (('seq_len = "32..64"', 'seq_len = [8]'), "", "seq_len 8 < 4 * num_kv_pairs (16)"),
    (('kind = "mqar"', 'kind = "mqr"'), "kind", "expected one of 'mqar', 'kernels', 'ablate', 'iou', got 'mqr'"),
    (('kind = "mqar"\n', ''), "kind", "missing"),
    (('[fixed]\n', '[fixd]\n'), "fixd", "unknown key; a suite has kind, description, grid, fixed"),
    (('seed = [0]', 'seed = [0]\n]'), "", "not valid TOML"),
])
def test_a_malformed_suite_is_one_line_naming_file_field_and_expectation(tmp_path, change, field_name, expected):
    assert GOOD.count(change[0]) == 1
    path = suite_file(tmp_path, GOOD.replace(*change))
    result = invoke("mqar", "--suite", path, "--dry-run", "--out", tmp_path)
    assert_one_line_error(result, str(path), f"{field_name}:" if field_name else "", expected)


def test_a_suite_that_is_not_utf8_is_one_line(tmp_path):
    path = suite_file(tmp_path, GOOD.encode() + b'description = "caf\xe9"\n')
    assert_one_line_error(invoke("mqar", "--suite", path, "--dry-run", "--out", tmp_path), str(path), "not UTF-8")


def test_an_int64_overflow_is_refused_before_the_store_sees_it():
    with pytest.raises(FieldError, match="epochs: expected a 64-bit integer >= 1, got 9223372036854775808"):
        MqarCase.from_flat({"mixer": "rebased", "d_model": 16, "seq_len": 32, "lr": 1e-3, "seed": 0,
                            "epochs": 2 ** 63, "train_examples": 8, "test_examples": 8, "batch_size": 8})


@pytest.mark.parametrize("args, expected", [
    (["--lrs", "nan"], "lr: expected a finite number > 0, got nan"),
    (["--lrs", "inf"], "lr: expected a finite number > 0, got inf"),
    (["--lrs", "0"], "lr: expected a finite number > 0, got 0.0"),
    (["--lrs", "-1e-3"], "lr: expected a finite number > 0, got -0.001"),
    (["--epochs", "0"], "epochs: expected a 64-bit integer >= 1, got 0"),
    (["--batch-size", str(2 ** 63)], "batch_size: expected a 64-bit integer >= 1, got 9223372036854775808"),
    (["--seeds", "-1"], "seed: expected a 64-bit integer >= 0, got -1"),
    (["--mixers", "transformer"], "mixer: unknown mixer 'transformer'; built-in: "),
])
def test_a_bad_flag_is_one_line_naming_the_command_line(tmp_path, args, expected):
    result = invoke("mqar", "--suite", suite_file(tmp_path, GOOD), *args, "--dry-run", "--out", tmp_path)
    assert_one_line_error(result, "command line: " + expected)


def test_a_suite_of_another_kind_is_one_line(tmp_path):
    assert_one_line_error(invoke("kernels", "--suite", "mqar-quick", "--dry-run", "--out", tmp_path),
                          "suite 'mqar-quick' is a 'mqar' suite, not 'kernels'")


def test_range_strings_follow_the_field_type(tmp_path):
    text = GOOD.replace("lr = [3e-3]", 'lr = "1e-3..4e-3"').replace("num_kv_pairs = 4", 'num_kv_pairs = "paper"')
    path = suite_file(tmp_path, text)
    cases = load_suite(str(path)).configs()
    assert [c.training.lr for c in cases] == pytest.approx([1e-3, 2e-3, 4e-3] * 2)
    assert {c.data.num_kv_pairs for c in cases} == {8, 16}  # the paper's rule: seq_len / 4


def test_ls_lists_the_good_suites_when_one_is_broken(tmp_path, monkeypatch):
    broken = suite_file(tmp_path, GOOD.replace("epochs = 1", "epochs = true"), "broken.toml")
    with_broken = {**suite_files(), "broken": broken}
    for module in ("rebased_bench.suite", "rebased_bench.cli.ls"):
        monkeypatch.setattr(f"{module}.suite_files", lambda: with_broken)
    result = invoke("ls")
    assert result.exit_code == 0, result.output
    assert "mqar-quick" in result.stdout and "broken" not in result.stdout
    assert result.stderr.strip().startswith("warning: suite broken:") and "epochs: expected" in result.stderr


def test_every_built_in_suite_is_valid():
    for name in suite_files():
        assert load_suite(name).configs(), name


@dataclass(frozen=True, kw_only=True)
class Part(Config):
    n: Count
    lr: Positive = 1


@dataclass(frozen=True, kw_only=True)
class Whole(Config):
    part: Part
    period: Count | None = field(default=None, metadata=WHEN_SET)
    where: str | None = field(default=None, metadata=IGNORED)


def test_the_flat_form_identity_and_columns_come_from_the_config():
    whole = Whole.from_flat({"n": 3, "where": "/tmp"})
    assert whole.flat() == {"n": 3, "lr": 1.0, "where": "/tmp"} and type(whole.part.lr) is float
    assert whole.case_id == Whole.from_flat({"n": 3}).case_id  # `where` does not change the result
    assert whole.case_id != Whole.from_flat({"n": 3, "period": 4}).case_id  # `period` is named once set
    assert Whole.columns().names == ["n", "lr", "period", "where"]
    assert Whole.from_flat(whole.flat()) == whole


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_planned_case_reads_back_from_its_flat_form(kind):
    name = {"mqar": "mqar-quick", "kernels": "kernels-quick", "ablate": "ablate-quick", "iou": "iou-quick"}[kind]
    for case in load_suite(name).configs():
        case = case.for_device(torch.device("cpu"))
        assert KINDS[kind].config.from_flat(case.flat()) == case
