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

    def __init__(self, out, kind: str, schema: pa.Schema, create=True):
        """create=False only reads what is there (a dry run): no folder made, nothing written or cleaned."""
        self.path = Path(out) / kind
        self.schema = schema
        if not create:
            return
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

    def row(self, case_id: str) -> dict:
        """The stored row of a case: column -> value."""
        return pq.read_table(self.row_path(case_id)).to_pylist()[0]

    def statuses(self) -> dict[str, str]:
        """The status (ok, error, skipped) of each case with a readable row in the store, by case id."""
        if not any(self.path.glob("*.parquet")):
            return {}
        rows = read_rows(self.path)
        return dict(zip(rows["case_id"], rows["status"]))

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


def read_rows(path, schemas: dict[str, pa.Schema] | None = None) -> pd.DataFrame:
    """All rows under a results folder (or one Parquet file), but in files and folders whose names start with "_"
    or "." (which Parquet readers skip too); unreadable files are reported on stderr and skipped.

    With `schemas` (kind name -> its columns), so is a file whose rows are not ours: without a kind and a status, of
    a kind not in `schemas`, or with a column of another type than its kind's (castable ones are cast: an int
    column where floats belong).
    """
    path = Path(path)
    if not path.exists():
        raise BenchError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(
        file for file in path.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in
                                                            file.relative_to(path).parts))
    frames = []
    for file in files:
        try:
            table = pq.read_table(file)
            frames.append((table if schemas is None else _as_ours(table, schemas)).to_pandas())
        except (OSError, pa.ArrowException) as exc:
            console.warn(f"skipping unreadable {file}: {_first_line(exc)}")
        except NotOurs as exc:
            console.warn(f"skipping {file}: {exc}")
    if not frames:
        return pd.DataFrame({"case_id": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)


class NotOurs(Exception):
    """A readable Parquet file whose rows are not result rows of ours."""


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# Arrow types that hold the same kind of value: a column of one is read as another of its family.
FAMILIES = (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t), pa.types.is_boolean,
            lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), pa.types.is_timestamp,
            lambda t: pa.types.is_list(t) or pa.types.is_large_list(t))


def _as_ours(table: pa.Table, schemas: dict[str, pa.Schema]) -> pa.Table:
    """The table with its kind's column types, or NotOurs saying why it is not one of ours."""
    for column in ("kind", "status"):
        if column not in table.column_names:
            raise NotOurs(f"no {column!r} column: not result rows")
    kinds = set(table.column("kind").to_pylist())
    unknown = sorted(map(str, kinds - set(schemas)))
    if unknown:
        raise NotOurs(f"rows of kind {', '.join(unknown)}; ours are {', '.join(schemas)}")
    for kind in sorted(kinds):
        for field in schemas[kind]:
            if field.name not in table.column_names:
                continue
            index = table.column_names.index(field.name)
            column = table.column(index)
            if column.type == field.type:
                continue
            same_family = any(family(column.type) and family(field.type) for family in FAMILIES)
            if not (pa.types.is_null(column.type) or same_family):
                raise NotOurs(f"column {field.name!r} holds {column.type}, not {field.type}")
            try:
                table = table.set_column(index, field.name, column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise NotOurs(f"column {field.name!r} does not fit {field.type}: {_first_line(exc)}") from None
    return table
