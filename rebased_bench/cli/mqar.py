"""`rebased-bench mqar`: MQAR accuracy sweeps."""

from typing import Annotated, Optional

import typer

from ..env import named_device
from ..kinds import mqar as mqar_kind
from .shared import (DEFAULT_OUT, MAX_CASES, BatchOpt, DeviceOpt, DModelsOpt, DryRunOpt, EpochsOpt, Executor,
                     ExecutorOpt, ForceOpt, Format, FormatOpt, GpusPerCaseOpt, KvOpt, LrsOpt, MaxCasesOpt, MixersOpt,
                     OutOpt, PrecisionOpt, RayAddressOpt, RetryErrorsOpt, SaveCheckpointsOpt, ScheduleOpt, SeedsOpt,
                     SeqLensOpt, TestOpt, TrainOpt, run_suite)

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench mqar                                   [dim]# mqar-gpu on a GPU, mqar-quick on a CPU[/dim]\n
  rebased-bench mqar --seq-lens 128..2048 --device cuda --dry-run  [dim]# plan a GPU sweep anywhere[/dim]\n
  rebased-bench mqar --mixers attention,rebased --seq-lens 64..256 --d-models 64 --epochs 2\n
  rebased-bench mqar --suite mqar-paper --mixers rebased,based --seq-lens 1024 --d-models 64 --device cuda\n
  rebased-bench mqar --suite mqar-paper --device cuda:all            [dim]# a worker per GPU of this machine[/dim]\n
  rebased-bench mqar --mixers my_pkg.my_module:MyMixer --seq-lens 64\n
  rebased-bench mqar --suite mqar-paper --dry-run\n
  rebased-bench mqar --suite mqar-quick --device cuda --executor ray --gpus-per-case 0.25  [dim]# 4 small cases per GPU[/dim]"""

SUITES = {"cpu": "mqar-quick", "cuda": "mqar-gpu"}  # the default suite on each kind of device
MqarSuiteOpt = Annotated[Optional[str], typer.Option("--suite", help=(
    f"Built-in suite (see `ls`) or a .toml path; default {SUITES['cuda']} on CUDA, {SUITES['cpu']} on a CPU."))]


def mqar(ctx: typer.Context, suite: MqarSuiteOpt = None, mixers: MixersOpt = None, seq_lens: SeqLensOpt = None,
         d_models: DModelsOpt = None, lrs: LrsOpt = None, seeds: SeedsOpt = None, epochs: EpochsOpt = None,
         schedule_epochs: ScheduleOpt = None, train_examples: TrainOpt = None, test_examples: TestOpt = None,
         batch_size: BatchOpt = None, num_kv_pairs: KvOpt = None, precision: PrecisionOpt = None,
         device: DeviceOpt = "auto", out: OutOpt = DEFAULT_OUT, dry_run: DryRunOpt = False,
         force: ForceOpt = False, retry_errors: RetryErrorsOpt = False, format: FormatOpt = Format.table,
         executor: ExecutorOpt = Executor.local, ray_address: RayAddressOpt = None,
         gpus_per_case: GpusPerCaseOpt = None, save_checkpoints: SaveCheckpointsOpt = False,
         max_cases: MaxCasesOpt = MAX_CASES):
    """MQAR accuracy sweeps: seq_len x d_model x mixer x lr x seed; one Parquet row per case."""
    suite = suite or SUITES[named_device(device).type]
    run_suite(ctx, mqar_kind.KIND, suite, checkpoint_dir=str(out / "checkpoints") if save_checkpoints else None)
