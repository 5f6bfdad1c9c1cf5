"""The ablation and IoU suites at the paper's MQAR protocol (ablate-mqar-paper, iou-mqar-paper): what they plan, that
they train mqar-paper's models through its trainer, and that each runs end to end when cut down to a tiny task."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rebased_bench.checkpoints import load_checkpoint
from rebased_bench.cli import app
from rebased_bench.kinds import ablate, iou, mqar
from rebased_bench.models.registry import VARIANTS
from rebased_bench.suite import load_suite

CPU = torch.device("cpu")
RESULTS = Path(__file__).resolve().parent.parent / "results"
# A tiny task in place of (1024, 64) and 100k examples: every other field stays the suite's (bf16 among them).
TINY = dict(seq_len=[32], d_model=[16], seed=[42])
TINY_FIXED = dict(epochs=2, train_examples=64, test_examples=16, batch_size=16, num_kv_pairs=4)
TINY_FLAGS = ["--seq-lens", "32", "--d-models", "16", "--seeds", "42", "--epochs", "1", "--train-examples", "64",
              "--test-examples", "16", "--batch-size", "16", "--num-kv-pairs", "4", "--device", "cpu"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tiny_case(suite: str, **fields):
    """The suite's first case on the tiny task, with `fields` (axes as lists) set as flags would set them."""
    grid = {**TINY, **{k: v for k, v in fields.items() if isinstance(v, list)}}
    fixed = {**TINY_FIXED, **{k: v for k, v in fields.items() if not isinstance(v, list)}}
    return load_suite(suite).override(grid, fixed).configs()[0]


def trained_models() -> list[mqar.MqarCase]:
    """The MQAR models the two suites train: an ablate case's own (its variant the mixer), an iou case's two."""
    ablations = [mqar.MqarCase.from_flat({k: v for k, v in case.flat().items() if k != "variant"})
                 for case in load_suite("ablate-mqar-paper").configs()]
    return ablations + [model for case in load_suite("iou-mqar-paper").configs() for model in case.mqar_cases()]


def test_ls_lists_the_paper_suites_with_their_grids():
    result = invoke("ls", "--format", "json")
    assert result.exit_code == 0, result.output
    suites = {suite["name"]: suite for suite in json.loads(result.stdout)}
    ablations, maps = suites["ablate-mqar-paper"], suites["iou-mqar-paper"]
    assert (ablations["kind"], ablations["cases"]) == ("ablate", 7 * 2 * 3)
    assert ablations["grid"]["variant"] == list(VARIANTS) and ablations["grid"]["seed"] == [42, 43, 44]
    assert (maps["kind"], maps["cases"]) == ("iou", 4 * 2 * 3)
    assert maps["grid"]["mixer"] == ["conv_attention", "based", "rebased", "norm_x2"]
    for suite in (ablations, maps):
        assert suite["grid"]["lr"] == [1e-3, 1e-2] and suite["fixed"]["precision"] == "bf16"


def test_every_model_they_train_is_a_case_of_mqar_paper_in_bf16_at_1024_64():
    paper = load_suite("mqar-paper").override({"d_model": [64], "seq_len": [1024]}, {"precision": "bf16"})
    planned = {case.case_id for case in paper.configs()}
    models = trained_models()
    assert {(m.model.d_model, m.data.seq_len, m.data.num_kv_pairs) for m in models} == {(64, 1024, 256)}
    for model in models:  # variants mqar-paper does not sweep: the same protocol with one of its mixers
        as_rebased = dataclasses.replace(model, model=dataclasses.replace(model.model, mixer="rebased"))
        assert model.case_id in planned or as_rebased.case_id in planned, model
    # the published mqar-paper rows of rebased and based at this cell, lrs and seeds are the same cases
    rows = pd.read_parquet(RESULTS / "mqar-paper" / "mqar")
    shared = rows[(rows.d_model == 64) & (rows.seq_len == 1024) & rows.lr.isin([1e-3, 1e-2])
                  & rows.seed.isin([42, 43, 44])]
    assert len(shared) >= 4 and set(shared.case_id) <= {m.case_id for m in models}


def test_the_iou_reference_is_one_softmax_model_per_seed():
    cases = load_suite("iou-mqar-paper").configs()
    references = {case.mqar_cases()[1] for case in cases}
    assert {(r.model.mixer, r.training.lr) for r in references} == {("conv_attention", 1e-3)}
    assert sorted(r.training.seed for r in references) == [42, 43, 44]


@pytest.mark.parametrize("variant", ["rebased", "based"])
def test_an_ablate_variant_trains_the_mqar_mixer_of_its_name(variant):
    case = tiny_case("ablate-mqar-paper", variant=[variant], lr=[1e-2])
    same = mqar.MqarCase.from_flat({k: v for k, v in case.flat().items() if k != "variant"})
    ablated, trained = ablate.run_case(case, CPU), mqar.run_case(same, CPU)
    assert same.model.mixer == variant and same.training.precision == "bf16"
    for column in ("accuracy_history", "loss_history", "params"):
        assert ablated[column] == trained[column], column


class Cut(Exception):
    """Stands for a kill right after an epoch's training state is written."""


def cut_after_first_epoch(progress):
    if progress.epoch == 1:
        raise Cut


def test_an_ablate_case_cut_after_an_epoch_continues_from_it(tmp_path):
    case = tiny_case("ablate-mqar-paper", variant=["norm_x2"])
    whole = ablate.run_case(case, CPU, tmp_path / "whole.pt")
    with pytest.raises(Cut):
        ablate.run_case(case, CPU, tmp_path / "cut.pt", on_epoch=cut_after_first_epoch)
    resumed = ablate.run_case(case, CPU, tmp_path / "cut.pt")
    assert (whole["resumed_from_epoch"], resumed["resumed_from_epoch"]) == (0, 1)
    assert resumed["loss_history"] == whole["loss_history"] and len(whole["loss_history"]) == 2


def test_an_iou_case_cut_after_an_epoch_continues_its_model_from_it(tmp_path):
    runs = {}
    for name in ("whole", "cut"):
        folder = tmp_path / name
        case = tiny_case("iou-mqar-paper", mixer=["rebased"], lr=[1e-2], checkpoint_dir=str(folder / "checkpoints"),
                         map_dir=str(folder / "maps"))
        state = folder / "state" / f"{case.case_id}.pt"  # where the runner would put the case's own state
        if name == "cut":
            with pytest.raises(Cut):
                iou.run_case(case, CPU, state, on_epoch=cut_after_first_epoch)
            assert (state.parent / f"{case.mqar_cases()[0].case_id}.pt").exists()  # the model's, by its MQAR id
        row = iou.run_case(case, CPU, state)
        runs[name] = load_checkpoint(row["checkpoint_path"], CPU)[1]["metrics"]
        assert not any(state.parent.iterdir())  # each model's state goes once its checkpoint is kept
    assert (runs["whole"]["resumed_from_epoch"], runs["cut"]["resumed_from_epoch"]) == (0, 1)
    assert runs["cut"]["loss_history"] == runs["whole"]["loss_history"]


def test_ablate_mqar_paper_cut_down_gives_ok_bf16_rows(tmp_path):
    result = invoke("ablate", "--suite", "ablate-mqar-paper", *TINY_FLAGS, "--lrs", "1e-2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "ablate")
    assert sorted(rows["variant"]) == sorted(VARIANTS) and set(rows["status"]) == {"ok"}
    assert set(rows["precision"]) == {"bf16"} and set(rows["suite"]) == {"ablate-mqar-paper"}


def test_iou_mqar_paper_cut_down_gives_ok_rows_against_one_reference(tmp_path):
    result = invoke("iou", "--suite", "iou-mqar-paper", *TINY_FLAGS, "--lrs", "1e-2", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(tmp_path / "iou").set_index("mixer")
    assert sorted(rows.index) == ["based", "conv_attention", "norm_x2", "rebased"] and set(rows["status"]) == {"ok"}
    assert rows["reference_checkpoint_path"].nunique() == 1 and (rows["query_rows"] == 16 * 4).all()
    reference = load_checkpoint(rows["reference_checkpoint_path"].iloc[0], CPU)[1]["config"]
    assert (reference["mixer"], reference["lr"], reference["precision"]) == ("conv_attention", 1e-3, "bf16")
    # conv_attention at lr 1e-2 is another softmax model than the reference at 1e-3
    assert rows.loc["conv_attention", "checkpoint_path"] != rows.loc["conv_attention", "reference_checkpoint_path"]
