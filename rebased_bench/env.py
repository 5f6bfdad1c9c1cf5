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


ALL_GPUS = "cuda:all"  # --device: one worker per GPU of this machine


def named_device(name: str) -> torch.device:
    """--device -> the torch.device the sweep's cases are planned for, without checking that it is here (a dry
    run plans a GPU sweep on a laptop). One name: auto, cpu, cuda or cuda:N; auto is CUDA where a GPU is visible.
    Several devices (a comma list of names, or cuda:all) plan for their kind, cpu or cuda. BenchError for any other
    name, or a list mixing the CPU and GPUs (their cases would differ)."""
    if name == ALL_GPUS:
        return torch.device("cuda")
    devices = [_one_device(part, name) for part in name.split(",")]
    if len({device.type for device in devices}) > 1:
        raise BenchError(f"--device {name}: the devices of one sweep are all cpu or all cuda:N")
    return devices[0] if len(devices) == 1 else torch.device(devices[0].type)


def _one_device(part: str, name: str) -> torch.device:
    if part == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(part)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise BenchError(f"--device: {name!r} is not auto, cpu, cuda, cuda:N, {ALL_GPUS} or a comma list of them")
    return device


def several_devices(name: str) -> bool:
    """Whether --device names several devices, a sweep with one worker process per device."""
    return name == ALL_GPUS or "," in name


def resolve_devices(name: str) -> list[torch.device]:
    """--device -> the devices here that run the sweep, one worker each when several: cuda:all is every GPU
    visible, a comma list its devices in order (cpu,cpu: two workers on the CPU). BenchError when a GPU asked for
    is missing."""
    named_device(name)  # its names and their kinds
    if name == ALL_GPUS:
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: no CUDA GPU is available on this machine")
        return [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
    return [resolve_device(part) for part in name.split(",")]


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
