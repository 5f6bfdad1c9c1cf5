"""`rebased-bench kernels`: attention kernel speed."""

from typing import Annotated, Optional

import typer

from ..env import named_device
from ..kinds import kernels as kernels_kind
from ..kinds.kernel_providers import PROVIDERS
from .shared import (DEFAULT_OUT, MAX_CASES, DeviceOpt, DryRunOpt, Executor, ExecutorOpt, ForceOpt, Format, FormatOpt,
                     GpusPerCaseOpt, MaxCasesOpt, OutOpt, RayAddressOpt, RetryErrorsOpt, SeqLensOpt, run_suite)

EXAMPLES = """[b]Examples[/b]\n
  rebased-bench kernels                                [dim]# kernels-seq on a GPU, kernels-quick (CPU) otherwise[/dim]\n
  rebased-bench kernels --seq-lens 1024..16384 --providers chunk,parallel,dispatch --modes fwd_bwd\n
  rebased-bench kernels --suite kernels-batch --batch 1..64\n
  rebased-bench kernels --providers chunk --seq-lens 16384 --profile --force  [dim]# traces in OUT/traces/kernels[/dim]\n
  rebased-bench kernels --suite kernels-seq --dry-run"""

KernelSuiteOpt = Annotated[Optional[str], typer.Option(
    "--suite", help="Built-in suite or .toml path; default kernels-seq on CUDA, kernels-quick on CPU.")]
BatchesOpt = Annotated[Optional[str], typer.Option(
    "--batch", help="Batch sizes, e.g. 1..64; default: tokens per call / seq_len.")]
ProvidersOpt = Annotated[Optional[str], typer.Option("--providers", help=f"Comma list: {', '.join(PROVIDERS)}.")]
ModesOpt = Annotated[Optional[str], typer.Option("--modes", help=f"{' or '.join(kernels_kind.MODES)}, or both.")]
ProfileOpt = Annotated[bool, typer.Option(
    "--profile", help="Also write a torch.profiler trace per case and print its top GPU kernels.")]


def kernels(ctx: typer.Context, suite: KernelSuiteOpt = None, seq_lens: SeqLensOpt = None, batch: BatchesOpt = None,
            providers: ProvidersOpt = None, modes: ModesOpt = None, profile: ProfileOpt = False,
            device: DeviceOpt = "auto", out: OutOpt = DEFAULT_OUT, dry_run: DryRunOpt = False,
            force: ForceOpt = False, retry_errors: RetryErrorsOpt = False, format: FormatOpt = Format.table,
            executor: ExecutorOpt = Executor.local,
            ray_address: RayAddressOpt = None, gpus_per_case: GpusPerCaseOpt = None,
            max_cases: MaxCasesOpt = MAX_CASES):
    """Attention kernel speed: provider x shape x mode; median/p20/p80 ms, TFLOP/s, peak memory, rel_err."""
    if suite is None:
        suite = "kernels-seq" if named_device(device).type == "cuda" else "kernels-quick"
    run_suite(ctx, kernels_kind.KIND, suite, profile_dir=str(out / "traces" / "kernels") if profile else None)
