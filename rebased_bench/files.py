"""Atomic file writes: rows, checkpoints, data caches, maps and figures are whole or absent, never torn."""

import os
from pathlib import Path
from typing import Callable


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it onto `path`; returns `path`.

    A reader sees the old file or the whole new one, and an interrupted write leaves no file behind. The
    temporary name starts with a dot, which Parquet readers of the folder skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
