"""The science commands: `ablate` (feature-map ablations) and `iou` (attention-map IoU), on the shared CLI app."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import ablate as ablate_kind, iou as iou_kind  # noqa: F401  (importing a suite module registers its kind)
from .cli import (BatchOpt, DModelsOpt, DeviceOpt, DryRunOpt, EpochsOpt, Executor, ExecutorOpt, ForceOpt, Format,
                  FormatOpt, GpusPerCaseOpt, KvOpt, LrsOpt, MixersOpt, OutOpt, PrecisionOpt, RayAddressOpt,
                  SaveCheckpointsOpt, ScheduleOpt, SeedsOpt, SeqLensOpt, SuiteOpt, TestOpt, TrainOpt, _mqar_axes,
                  _mqar_fixed, _opt, app, one_line_errors, run_suite_command)
from .ranges import parse_names

VariantsOpt = Annotated[Optional[str], typer.Option(
    "--variants", help=f"Comma list of feature maps (default: all): {', '.join(ablate_kind.VARIANTS)}.")]
TopKOpt = Annotated[Optional[int], typer.Option(
    "--top-k", help="Key set of a query row: its k largest weights (default 1). Excludes --mass.")]
MassOpt = Annotated[Optional[float], typer.Option(
    "--mass", help="Key set of a query row: the fewest keys holding this share of it, e.g. 0.9. Excludes --top-k.")]


@app.command(epilog="""[b]Examples[/b]\n
  rebased-bench ablate                                 [dim]# the CPU default suite ablate-quick[/dim]\n
  rebased-bench ablate --variants x2,norm_x2,rebased --seq-lens 32,64 --seeds 0..2:+1\n
  rebased-bench ablate --suite ablate-paper --device cuda --save-checkpoints\n
  rebased-bench ablate --suite ablate-paper --dry-run""")
@one_line_errors
def ablate(suite: SuiteOpt = "ablate-quick", variants: VariantsOpt = None, seq_lens: SeqLensOpt = None,
           d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
           schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
           batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
           device: DeviceOpt = "auto",
           out: OutOpt = Path("results"), dry_run: DryRunOpt = False, force: ForceOpt = False,
           format: FormatOpt = Format.table, executor: ExecutorOpt = Executor.local,
           ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None,
           save_checkpoints: SaveCheckpointsOpt = False):
    """Feature-map ablations on MQAR: variant x seq_len x d_model x lr x seed, with the learned γ/β per row."""
    grid = dict(variant=_opt(parse_names, variants, "--variants"), **_mqar_axes(seq_lens, d_models, lrs, seeds))
    fixed = dict(**_mqar_fixed(epochs, schedule_epochs, train_examples, test_examples, batch_size, num_kv_pairs,
                               precision),
                 checkpoint_dir=str(out / "checkpoints") if save_checkpoints else None)
    run_suite_command(suite, grid, fixed, device, out, dry_run, force, format, kind_name="ablate",
                      executor=executor, ray_address=ray_address, gpus_per_case=gpus_per_case)


@app.command(epilog="""[b]Examples[/b]\n
  rebased-bench iou                                    [dim]# the CPU default suite iou-quick[/dim]\n
  rebased-bench iou --mixers based,rebased,norm_x2 --mass 0.9\n
  rebased-bench iou --top-k 2 --seeds 0..2:+1\n
  rebased-bench mqar --save-checkpoints ... && rebased-bench iou ...  [dim]# same settings: reuses the models[/dim]""")
@one_line_errors
def iou(suite: SuiteOpt = "iou-quick", mixers: MixersOpt = None, seq_lens: SeqLensOpt = None,
        d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
        schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
        batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
        device: DeviceOpt = "auto",
        out: OutOpt = Path("results"), dry_run: DryRunOpt = False, force: ForceOpt = False,
        format: FormatOpt = Format.table, executor: ExecutorOpt = Executor.local,
        ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None,
        top_k: TopKOpt = None, mass: MassOpt = None):
    """Attention-map IoU of linear models vs softmax attention (conv_attention) and vs the oracle, on MQAR.

    Models come from OUT/checkpoints/mqar/ (`mqar --save-checkpoints` with the same settings) or are trained
    and kept there. Heatmaps of one test example go to OUT/figures/ (PNG and PDF), its maps to OUT/maps/iou/.
    """
    grid = dict(mixer=_opt(parse_names, mixers, "--mixers"), **_mqar_axes(seq_lens, d_models, lrs, seeds))
    fixed = dict(**_mqar_fixed(epochs, schedule_epochs, train_examples, test_examples, batch_size, num_kv_pairs,
                               precision),
                 top_k=top_k, mass=mass, checkpoint_dir=str(out / "checkpoints"), map_dir=str(out / "maps" / "iou"))
    rows = run_suite_command(suite, grid, fixed, device, out, dry_run, force, format, kind_name="iou",
                             executor=executor, ray_address=ray_address, gpus_per_case=gpus_per_case)
    if rows is not None and not rows.empty:
        from .iou_figures import heatmaps_from_rows  # matplotlib only loads here
        for path in heatmaps_from_rows(rows, out / "figures"):  # OUT/iou/ holds Parquet only
            typer.echo(f"figure {path}", err=True)
