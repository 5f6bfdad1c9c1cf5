"""The Ray executor: each case a Ray task on the GPUs of one machine or a cluster; the driver alone writes rows.

Same interface as `runner.local_executor`: `executor(tasks, run, display)` yields one row per task, here in the order
the tasks finish. Ray does the scheduling (fractional `num_gpus` packs several small cases on one GPU). A task runs
in another process, which cannot reach the driver's display: a case shows when it ends, not epoch by epoch.
"""

import functools
import socket
from typing import Callable, Iterable, Iterator

import torch

from .errors import BenchError
from .files import DiskFull, is_disk_full
from .runner import case_row, error_row

INSTALL_HINT = "pip install 'rebased-bench[ray]'"
CPUS_PER_CASE = 1  # a case is one training loop: one core feeds its GPU, and on CPU-only nodes cases run side by side
PROBE_SECONDS = 5.0


def import_ray():
    """The ray module, or a one-line BenchError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise BenchError(f"--executor ray needs Ray: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None):
    """Join the cluster at `address` (auto, HOST:PORT) or start a local Ray; reuse the one this process joined."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "auto"):
        _probe(address)
    options = dict(address=address, logging_level="WARNING")
    if address is None:
        options["include_dashboard"] = False  # a local instance for one sweep; the dashboard needs ray[default]
    try:
        ray.init(**options)
    except (ConnectionError, ValueError) as exc:
        reason = str(exc).partition("\n")[0]
        raise BenchError(f"--ray-address {address}: {reason}") from None
    return ray


def _probe(address: str):
    """Fail fast on an unreachable HOST:PORT, where ray.init would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(f"--ray-address {address}: expected auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise BenchError(f"--ray-address {address}: no Ray cluster reachable there ({exc.strerror or exc})") from None


def cluster_device(ray, name: str) -> torch.device:
    """--device against the cluster's GPUs, not the driver's; a task sees only its GPU, so cuda:N means cuda."""
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("auto", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise BenchError(f"--device: {name!r} is not auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if gpus_per_node(ray) else "cpu")
    if not gpus_per_node(ray):
        raise BenchError(f"--device {name}: no node of the Ray cluster has a GPU")
    return torch.device("cuda")


def gpus_per_node(ray) -> float:
    """The most GPUs one live node offers: a case must fit on one node."""
    return max((node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"]), default=0)


def start_ray_executor(address: str | None, gpus_per_case: float | None, device_name: str):
    """Connect, resolve the device on the cluster and check the GPU request: (device, executor) or a BenchError."""
    if gpus_per_case is not None and (gpus_per_case < 0 or (gpus_per_case > 1 and gpus_per_case % 1)):
        raise BenchError(f"--gpus-per-case {gpus_per_case}: a fraction up to 1, or a whole number of GPUs")
    ray = connect(address)
    device = cluster_device(ray, device_name)
    if gpus_per_case is None:
        gpus_per_case = 1.0 if device.type == "cuda" else 0.0
    if device.type == "cuda" and gpus_per_case == 0:
        raise BenchError(f"--gpus-per-case 0 with --device {device_name}: a case would get no GPU")
    if gpus_per_case > gpus_per_node(ray):  # Ray would keep such a task pending forever
        raise BenchError(f"--gpus-per-case {gpus_per_case}: no node of the Ray cluster has that many GPUs")
    return device, functools.partial(ray_executor, gpus_per_case=gpus_per_case)


def ray_executor(tasks: Iterable[tuple], run: Callable, display=None, gpus_per_case: float = 0.0) -> Iterator[dict]:
    """One Ray task per case, rows yielded as tasks finish; a dead task is an error row; Ctrl-C cancels the rest.

    Every task is taken from `tasks` before any is submitted: a sweep's claims (claims.py) are made by this driver.
    """
    ray = import_ray()
    tasks = list(tasks)
    # max_retries=0: a case that ran out of memory would only die again; its error row says so and --force retries.
    remote = ray.remote(_run_in_worker).options(num_cpus=CPUS_PER_CASE, num_gpus=gpus_per_case, max_retries=0)
    submitted = {remote.remote(run, task): task for task in tasks}
    pending = list(submitted)
    try:
        while pending:
            (ref,), pending = ray.wait(pending, num_returns=1)
            try:
                row = ray.get(ref)
            except ray.exceptions.TaskCancelledError:  # cancelled from outside: no result, the case stays to do
                raise KeyboardInterrupt from None
            except ray.exceptions.RayError as exc:  # worker killed, out of memory, node lost
                cause = getattr(exc, "cause", None) or exc
                if is_disk_full(cause):  # as in a local sweep: stop, rows so far kept
                    raise DiskFull(str(cause).splitlines()[0]) from None
                row = error_row(case_row(*submitted[ref][:4]), cause)
            yield row
    finally:  # Ctrl-C or the driver stopped reading: nothing still queued or running may outlive the sweep
        for ref in pending:
            ray.cancel(ref, force=True)


def _run_in_worker(run: Callable, task: tuple) -> dict:
    """In a Ray worker: point the case at the GPU Ray gave this task, run it into a row."""
    import ray
    # unpickling the kind and the case imported the modules defining them; the state path is under --out, which
    # the workers of one machine (or of a cluster on a shared folder) see as the driver does
    kind, suite, case, device_name, state_path = task
    if device_name != "cpu" and ray.get_gpu_ids():
        device_name = "cuda"  # Ray set CUDA_VISIBLE_DEVICES to this task's GPU: it is cuda:0 in here
    return run(kind, suite, case, device_name, state_path)
