"""Trained models of suite cases: `<checkpoint_dir>/<kind>/<case_id>.pt` (weights, model and case config, metrics)."""

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import Config
from .errors import BenchError
from .files import save_torch
from .models.lm import LanguageModel, ModelConfig


class UnreadableFile(BenchError):
    """A checkpoint or training state that cannot be loaded; the message names the file and why."""


def checkpoint_path(checkpoint_dir, kind: str, case: Config) -> Path:
    """Where the model of this case lives: named by the same case id as its result row."""
    return Path(checkpoint_dir) / kind / f"{case.case_id}.pt"


def save_checkpoint(path: Path, model: LanguageModel, config: dict, metrics: dict) -> str:
    """Write atomically (a reader never sees a torn file); config: the case's flat form. Returns the path."""
    payload = {"model_config": dataclasses.asdict(model.config), "config": config, "metrics": metrics,
               "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()}}
    return str(save_torch(payload, path))


def save_if_asked(model: LanguageModel, kind: str, case: Config, metrics: dict) -> str | None:
    """Save when the case has a `checkpoint_dir` (the `--save-checkpoints` flag); returns the path or None."""
    if not getattr(case, "checkpoint_dir", None):
        return None
    return save_checkpoint(checkpoint_path(case.checkpoint_dir, kind, case), model, case.flat(), metrics)


def load_checkpoint(path, device: torch.device) -> tuple[LanguageModel, dict]:
    """(model in eval mode on `device`, the saved payload without the weights); UnreadableFile names a bad file."""
    with unreadable_as_error(path, "checkpoint"):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config, weights = ModelConfig(**payload.pop("model_config")), payload.pop("state_dict")
    model = LanguageModel(config)  # its errors (a mixer that no longer imports) are not the file's
    with unreadable_as_error(path, "checkpoint"):
        model.load_state_dict(weights)
    return model.to(device).eval(), payload


@contextmanager
def unreadable_as_error(path, what: str):
    """Inside: an error reading `path` (torn, truncated, not ours, other weights) becomes an UnreadableFile."""
    try:
        yield
    except (FileNotFoundError, UnreadableFile):
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise UnreadableFile(f"{what} {path} is unreadable ({reason})") from exc


@contextmanager
def set_aside_if_unreadable(path, then: str):
    """Inside: an UnreadableFile moves `path` out of the way (to `<name>.unreadable`), so the next run writes it
    afresh, and says so: `then` tells what happens next ("the next run trains it again")."""
    try:
        yield
    except UnreadableFile as exc:
        path = Path(path)
        aside = path.with_name(f"{path.name}.unreadable")
        path.replace(aside)
        raise UnreadableFile(f"{exc}; moved to {aside}, {then}") from None
