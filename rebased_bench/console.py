"""Where output goes: data (tables, JSON rows, file paths) on stdout; progress, logs and errors on stderr."""

import json

import pandas as pd
from rich.console import Console

stdout = Console()
stderr = Console(stderr=True)  # also the console of progress bars


def show(renderable):
    """A Rich table (or any renderable) as data on stdout."""
    stdout.print(renderable)


def out(text: str):
    """Data on stdout as plain text: never wrapped, styled or marked up (a path, JSON)."""
    stdout.out(text, highlight=False)


def out_rows(rows: pd.DataFrame):
    """Rows as a JSON array of records on stdout."""
    out(json.dumps(json.loads(rows.to_json(orient="records", date_format="iso")), indent=1))


def log(text: str):
    """A progress or log line on stderr, as plain text (never wrapped, so one line stays one line)."""
    stderr.out(text, highlight=False)


def warn(text: str):
    log(f"warning: {text}")


def error(text: str):
    log(f"error: {text}")
