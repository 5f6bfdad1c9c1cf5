"""Atomic file writes: rows, checkpoints, states, data caches, maps, traces and figures are whole or absent.

A write goes to a temporary file beside its target, named after the writer (`.<name>~<host>~<pid>.tmp`), and is
renamed onto the target. A signal waits for the rename (interrupts.critical); an error, a full disk included,
removes the temporary file. Only SIGKILL or a crash can leave one behind: `remove_stale_temp_files` clears those
whose writer is gone.
"""

import errno
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from .errors import BenchError
from .interrupts import critical

HOST = socket.gethostname()
# A temporary file of another machine (a shared folder) whose writer we cannot ask about is abandoned after this
# long: no single write takes an hour.
ABANDONED_SECONDS = 3600.0
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(BenchError):
    """No space left (or the quota reached) while writing a file; the message names it."""


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it onto `path`; returns `path`.

    A reader sees the old file or the whole new one. The temporary name starts with a dot, which Parquet readers
    of the folder skip. A full disk is a DiskFull naming `path`, and leaves no temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}~{HOST}~{os.getpid()}.tmp")
    with critical(), disk_full_as_error(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def save_torch(payload, path) -> Path:
    """torch.save `payload` to `path` atomically; returns `path`."""
    def write(tmp):
        # Through a Python file: torch's own file writer reports a full disk as an "unexpected pos" RuntimeError,
        # where the file object raises OSError(ENOSPC).
        with open(tmp, "wb") as file:
            torch.save(payload, file)
    return write_atomic(path, write)


@contextmanager
def disk_full_as_error(path):
    """Inside: an error that comes from a full disk or quota becomes a DiskFull naming `path`."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFull(f"no space left on device writing {path}") from exc
        raise


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in FULL_DISK):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def process_gone(host: str, pid: int) -> bool:
    """Whether process `pid` of machine `host` has ended; False when that cannot be told (another machine)."""
    if host != HOST or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temp_files(folder):
    """Remove the temporary files under `folder` whose writer is gone (killed mid-write): ours, by their name."""
    for tmp in Path(folder).rglob(".*~*~*.tmp"):
        writer, _, pid = tmp.name.removesuffix(".tmp").rpartition("~")
        host = writer.rpartition("~")[2]
        try:
            abandoned = time.time() - tmp.stat().st_mtime > ABANDONED_SECONDS
            if abandoned or (pid.isdigit() and process_gone(host, int(pid))):
                tmp.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue
