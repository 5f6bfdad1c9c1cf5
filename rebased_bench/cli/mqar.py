"""`rebased-bench mqar`: MQAR accuracy sweeps."""

from pathlib import Path

import typer

from ..kinds import mqar as mqar_kind
from .shared import (MAX_CASES, BatchOpt, DeviceOpt, DModelsOpt, DryRunOpt, EpochsOpt, Executor, ExecutorOpt, ForceOpt,
                     Format, FormatOpt, GpusPerCaseOpt, KvOpt, LrsOpt, MaxCasesOpt, MixersOpt, OutOpt, PrecisionOpt,
                     RayAddressOpt, SaveCheckpointsOpt, ScheduleOpt, SeedsOpt, SeqLensOpt, SuiteOpt, TestOpt, TrainOpt,
                     run_suite)

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench mqar                                   [dim]# the CPU default suite mqar-quick[/dim]\n
  rebased-bench mqar --mixers attention,rebased --seq-lens 64..256 --d-models 64 --epochs 2\n
  rebased-bench mqar --suite mqar-fig1-lite --device cuda --out results\n
  rebased-bench mqar --mixers my_pkg.my_module:MyMixer --seq-lens 64\n
  rebased-bench mqar --suite mqar-paper --dry-run\n
  rebased-bench mqar --suite mqar-fig1-lite --executor ray --gpus-per-case 0.25  [dim]# 4 cases per GPU[/dim]"""


def mqar(ctx: typer.Context, suite: SuiteOpt = "mqar-quick", mixers: MixersOpt = None, seq_lens: SeqLensOpt = None,
         d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
         schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
         batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
         device: DeviceOpt = "auto", out: OutOpt = Path("results"), dry_run: DryRunOpt = False,
         force: ForceOpt = False, format: FormatOpt = Format.table, executor: ExecutorOpt = Executor.local,
         ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None,
         save_checkpoints: SaveCheckpointsOpt = False,
         max_cases: MaxCasesOpt = MAX_CASES):
    """MQAR accuracy sweeps: seq_len x d_model x mixer x lr x seed; one Parquet row per case."""
    run_suite(ctx, mqar_kind.KIND, checkpoint_dir=str(out / "checkpoints") if save_checkpoints else None)
