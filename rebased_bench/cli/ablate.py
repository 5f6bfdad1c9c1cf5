"""`rebased-bench ablate`: feature-map ablations on MQAR."""

from typing import Annotated, Optional

import typer

from ..kinds import ablate as ablate_kind
from ..models.registry import VARIANTS
from .shared import (DEFAULT_OUT, MAX_CASES, BatchOpt, DeviceOpt, DModelsOpt, DryRunOpt, EpochsOpt, Executor,
                     ExecutorOpt, ForceOpt, Format, FormatOpt, GpusPerCaseOpt, KvOpt, LrsOpt, MaxCasesOpt, OutOpt,
                     PrecisionOpt, RayAddressOpt, RetryErrorsOpt, SaveCheckpointsOpt, ScheduleOpt, SeedsOpt, SeqLensOpt,
                     SuiteOpt, TestOpt, TrainOpt, run_suite)

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench ablate                                 [dim]# the CPU default suite ablate-quick[/dim]\n
  rebased-bench ablate --variants x2,norm_x2,rebased --seq-lens 32,64 --seeds 0..2:+1\n
  rebased-bench ablate --suite ablate-gpu --device cuda --save-checkpoints\n
  rebased-bench ablate --suite ablate-mqar-paper --device cuda --dry-run  [dim]# the paper's protocol[/dim]"""

VariantsOpt = Annotated[Optional[str], typer.Option(
    "--variants", help=f"Comma list of feature maps (default: all): {', '.join(VARIANTS)}.")]


def ablate(ctx: typer.Context, suite: SuiteOpt = "ablate-quick", variants: VariantsOpt = None,
           seq_lens: SeqLensOpt = None, d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None,
           epochs: EpochsOpt = None, schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None,
           test_examples: TestOpt = None, batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None,
           precision: PrecisionOpt = None, device: DeviceOpt = "auto", out: OutOpt = DEFAULT_OUT,
           dry_run: DryRunOpt = False, force: ForceOpt = False, retry_errors: RetryErrorsOpt = False,
           format: FormatOpt = Format.table,
           executor: ExecutorOpt = Executor.local, ray_address: RayAddressOpt = None,
           gpus_per_case: GpusPerCaseOpt = None, save_checkpoints: SaveCheckpointsOpt = False,
           max_cases: MaxCasesOpt = MAX_CASES):
    """Feature-map ablations on MQAR: variant x seq_len x d_model x lr x seed, with the learned γ/β per row."""
    run_suite(ctx, ablate_kind.KIND, checkpoint_dir=str(out / "checkpoints") if save_checkpoints else None)
