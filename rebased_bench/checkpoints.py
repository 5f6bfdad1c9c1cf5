"""Trained models of suite cases: `<checkpoint_dir>/<kind>/<case_id>.pt` (weights, model and case config, metrics)."""

import dataclasses
import os
from pathlib import Path

import torch

from .models.lm import LanguageModel, ModelConfig
from .runner import case_id


def checkpoint_path(checkpoint_dir, kind: str, config: dict, ignores=()) -> Path:
    """Where the model of this case lives: named by the same case id as its result row."""
    return Path(checkpoint_dir) / kind / f"{case_id(config, ignores)}.pt"


def save_checkpoint(path: Path, model: LanguageModel, config: dict, metrics: dict) -> str:
    """Write atomically (a reader never sees a torn file); returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_config": dataclasses.asdict(model.config), "config": config, "metrics": metrics,
               "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return str(path)


def save_if_asked(model: LanguageModel, kind: str, config: dict, metrics: dict, ignores=()) -> str | None:
    """Save when the case has a `checkpoint_dir` (the `--save-checkpoints` flag); returns the path or None."""
    if not config.get("checkpoint_dir"):
        return None
    return save_checkpoint(checkpoint_path(config["checkpoint_dir"], kind, config, ignores), model, config, metrics)


def load_checkpoint(path, device: torch.device) -> tuple[LanguageModel, dict]:
    """(model in eval mode on `device`, the saved payload without the weights)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = LanguageModel(ModelConfig(**payload.pop("model_config")))
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
