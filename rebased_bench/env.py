"""Environment columns every result row carries: code version, library versions, device."""

import functools
import os
import subprocess
from pathlib import Path

import torch

from .errors import BenchError

REPO = Path(__file__).resolve().parent.parent


@functools.cache
def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout the package runs from; ("unknown", False) outside git.

    A copy without .git (e.g. a `git archive` of a commit, copied to a GPU machine) takes the commit from
    REBASED_BENCH_GIT_COMMIT and REBASED_BENCH_GIT_DIRTY=1|0.
    """
    if os.environ.get("REBASED_BENCH_GIT_COMMIT"):
        return os.environ["REBASED_BENCH_GIT_COMMIT"], os.environ.get("REBASED_BENCH_GIT_DIRTY") == "1"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def named_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N -> the torch.device it names, without checking that it is here (a dry run plans
    a GPU sweep on a laptop); auto is CUDA where a GPU is visible. BenchError for any other name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise BenchError(f"--device: {name!r} is not auto, cpu, cuda or cuda:N")
    return device


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N -> a torch.device; BenchError when the GPU asked for is missing."""
    device = named_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: no CUDA GPU is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    return device


def environment(device: torch.device) -> dict:
    """The environment columns of a row run on `device`."""
    commit, dirty = git_state()
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = ""
    return {
        "device": str(device),
        # A Ray driver without a GPU describes a case whose GPU worker died: it cannot name that GPU.
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else "",
        "git_commit": commit,
        "git_dirty": dirty,
        "torch_version": torch.__version__,
        "triton_version": triton_version,
        "cuda_version": torch.version.cuda or "",
    }
