"""Parquet store: one file per case under <out>/<kind>/, written atomically; readable with pandas.read_parquet."""

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import console
from .errors import BenchError
from .files import remove_stale_temp_files, write_atomic


class Store:
    """Rows of one suite kind in `<out>/<kind>/<case_id>.parquet`."""

    def __init__(self, out, kind: str, schema: pa.Schema):
        self.path = Path(out) / kind
        self.schema = schema
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise BenchError(f"--out: cannot write to {self.path}: {exc.strerror or exc}") from None
        remove_stale_temp_files(self.path.parent)  # rows, states, claims, checkpoints of runs killed mid-write

    def row_path(self, case_id: str) -> Path:
        return self.path / f"{case_id}.parquet"

    @property
    def state_folder(self) -> Path:
        """Where unfinished cases keep their training states: `<out>/state/<kind>/`, beside the rows."""
        return self.path.parent / "state" / self.path.name

    def state_path(self, case_id: str) -> Path:
        return self.state_folder / f"{case_id}.pt"

    @property
    def claims_folder(self) -> Path:
        """Where sweeps claim the cases they run (claims.py): `<out>/claims/<kind>/`."""
        return self.path.parent / "claims" / self.path.name

    def has_row(self, case_id: str, since: float = 0.0) -> bool:
        """Whether the case has a row, written at `since` (a time.time()) or later."""
        try:
            return self.row_path(case_id).stat().st_mtime >= since
        except FileNotFoundError:
            return False

    def done_ids(self) -> set[str]:
        """Case ids with a readable row in the store."""
        return set(read_rows(self.path)["case_id"]) if any(self.path.glob("*.parquet")) else set()

    def write(self, row: dict):
        """Write one row atomically: a reader never sees a torn file, an interrupted write leaves none."""
        table = to_table(row, self.schema)
        write_atomic(self.row_path(row["case_id"]), lambda tmp: pq.write_table(table, tmp))


def to_table(row: dict, schema: pa.Schema) -> pa.Table:
    """One-row table: declared columns keep their types even when null, extra columns are inferred."""
    fields = list(schema) + [pa.field(name, pa.array([value]).type) for name, value in row.items()
                             if name not in schema.names]
    full = pa.schema(fields, metadata=schema.metadata)
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in fields}], schema=full)


def read_rows(path) -> pd.DataFrame:
    """All rows under a results folder (or one Parquet file); corrupt files are reported and skipped."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not path.exists():
        raise BenchError(f"{path}: no such file or folder")
    frames = []
    for file in files:
        try:
            frames.append(pq.read_table(file).to_pandas())
        except (OSError, pa.ArrowException) as exc:
            console.warn(f"skipping unreadable {file}: {exc}")
    if not frames:
        return pd.DataFrame({"case_id": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)
