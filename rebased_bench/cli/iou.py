"""`rebased-bench iou`: attention-map IoU of linear models vs softmax attention and vs the oracle."""

from typing import Annotated, Optional

import typer

from .. import console
from ..kinds import iou as iou_kind
from .shared import (DEFAULT_OUT, MAX_CASES, BatchOpt, DeviceOpt, DModelsOpt, DryRunOpt, EpochsOpt, Executor,
                     ExecutorOpt, ForceOpt, Format, FormatOpt, GpusPerCaseOpt, KvOpt, LrsOpt, MaxCasesOpt, MixersOpt,
                     OutOpt, PrecisionOpt, RayAddressOpt, RetryErrorsOpt, ScheduleOpt, SeedsOpt, SeqLensOpt, SuiteOpt,
                     TestOpt, TrainOpt, run_suite)

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench iou                                    [dim]# the CPU default suite iou-quick[/dim]\n
  rebased-bench iou --mixers based,rebased,norm_x2 --mass 0.9\n
  rebased-bench iou --top-k 2 --seeds 0..2:+1\n
  rebased-bench iou --suite iou-mqar-paper --mixers rebased --lrs 1e-2  [dim]# the paper's protocol[/dim]\n
  rebased-bench mqar --save-checkpoints ... && rebased-bench iou ...  [dim]# same settings: reuses the models[/dim]"""

TopKOpt = Annotated[Optional[int], typer.Option(
    "--top-k", help="Key set of a query row: its k largest weights (default 1). Excludes --mass.")]
ReferenceLrOpt = Annotated[Optional[float], typer.Option(
    "--reference-lr", help="The reference's lr (default: each case's own), e.g. one softmax model for every mixer.")]
MassOpt = Annotated[Optional[float], typer.Option(
    "--mass", help="Key set of a query row: the fewest keys holding this share of it, e.g. 0.9. Excludes --top-k.")]


def iou(ctx: typer.Context, suite: SuiteOpt = "iou-quick", mixers: MixersOpt = None, seq_lens: SeqLensOpt = None,
        d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
        schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
        batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
        device: DeviceOpt = "auto", out: OutOpt = DEFAULT_OUT, dry_run: DryRunOpt = False,
        force: ForceOpt = False, retry_errors: RetryErrorsOpt = False, format: FormatOpt = Format.table,
        executor: ExecutorOpt = Executor.local,
        ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None,
        top_k: TopKOpt = None, mass: MassOpt = None, reference_lr: ReferenceLrOpt = None,
        max_cases: MaxCasesOpt = MAX_CASES):
    """Attention-map IoU of linear models vs softmax attention (conv_attention) and vs the oracle, on MQAR.

    Models come from OUT/checkpoints/mqar/ (`mqar --save-checkpoints` with the same settings) or are trained
    and kept there. Heatmaps of one test example go to OUT/figures/ (PNG and PDF, as `plot` draws them), its
    maps to OUT/maps/iou/.
    """

    def draw_heatmaps(rows):
        if (rows["status"] == "ok").any():  # only ok rows have maps
            from ..figures import plot_iou_heatmaps  # matplotlib only loads here
            for path in plot_iou_heatmaps(rows, out / "figures"):  # OUT/iou/ holds Parquet only
                console.log(f"figure {path}")

    run_suite(ctx, iou_kind.KIND, after=draw_heatmaps, checkpoint_dir=str(out / "checkpoints"),
              map_dir=str(out / "maps" / "iou"))
