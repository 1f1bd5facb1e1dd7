"""Checkpoints: a folder with safetensors weights and a JSON card, written atomically.

``config.json`` holds everything needed to rebuild the model (encoder kind and config), the
parameter-space version it was trained for (a model trained on another table is refused), the
step, and the recipe (command, seed, dataset manifest summary). ``optimizer.pt`` holds the
optimizer and trainer state for resuming and is only ever read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from converter.vital.parameters import parameter_space
from training.model import ParameterModel

WEIGHTS = "model.safetensors"
CARD = "config.json"
OPTIMIZER = "optimizer.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used with this code or this parameter space."""


def save_checkpoint(model: ParameterModel, folder: str | os.PathLike[str], *, step: int,
                    optimizer_state: dict[str, Any] | None = None, recipe: dict[str, Any]) -> Path:
    """Write ``folder`` whole or not at all: build beside it, then swap it in."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(staging / WEIGHTS))
    card = {"model": model.config, "space_version": parameter_space().version, "step": int(step),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "recipe": recipe}
    (staging / CARD).write_text(json.dumps(card, indent=1, default=str))
    if optimizer_state is not None:
        torch.save(optimizer_state, staging / OPTIMIZER)
    retired = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, retired)
    os.replace(staging, folder)
    shutil.rmtree(retired, ignore_errors=True)
    return folder


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON card of a checkpoint folder (or of the folder holding ``path``)."""
    folder = _folder(path)
    card_path = folder / CARD
    if not card_path.exists():
        raise CheckpointError(f"{folder} is not a vinv checkpoint (no {CARD})")
    return json.loads(card_path.read_text())


def load_checkpoint(path: str | os.PathLike[str]) -> ParameterModel:
    """The model saved at ``path`` in eval mode; refuses one trained for another parameter space."""
    folder = _folder(path)
    card = read_card(folder)
    expected = parameter_space().version
    if card.get("space_version") != expected:
        raise CheckpointError(f"{folder} was trained for parameter space {card.get('space_version')}, but this "
                              f"vinv uses {expected}: retrain, or use the vinv version it was trained with")
    model = ParameterModel(**card["model"])
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval()


def load_optimizer_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    state_path = _folder(path) / OPTIMIZER
    return torch.load(state_path, map_location="cpu", weights_only=True) if state_path.exists() else None


def _folder(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path
