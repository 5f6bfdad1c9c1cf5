"""Trained models of suite cases: `<checkpoint_dir>/<kind>/<case_id>.pt` (weights, model and case config, metrics)."""

import dataclasses
from pathlib import Path

import torch

from .config import Config
from .files import save_torch
from .models.lm import LanguageModel, ModelConfig


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
    """(model in eval mode on `device`, the saved payload without the weights)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = LanguageModel(ModelConfig(**payload.pop("model_config")))
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
