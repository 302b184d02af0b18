"""Checkpoints of a whole training run with orbax-checkpoint.

A checkpoint is a folder holding the state pytree (params, optimizer state,
BatchNorm statistics, step) written by orbax, and ``meta.json`` with what is
not an array: the data position (epoch, batch), the run's PRNG key and the
metrics at that point. ``meta.json`` is written last, so a folder without it is
an interrupted save and is never restored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from advjax.train._state import TrainState

META = "meta.json"
STATE = "state"
_PREFIX = "step_"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or does not match the state."""


def _arrays_of(state: TrainState) -> dict:
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "batch_stats": state.batch_stats if state.batch_stats else {},
        "step": state.step,
        "carry": state.carry if state.carry is not None else {},
    }


def save_checkpoint(path: str | Path, state: TrainState, meta: dict[str, Any]) -> Path:
    """Writes ``state`` and ``meta`` to the folder ``path`` (replaced if present).

    Example:
      >>> # save_checkpoint("runs/x/checkpoints/step_00000100", state, {"epoch": 1, "batch": 0})
    """
    path = Path(path).absolute()
    staging = path.with_name(path.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(staging / STATE, jax.device_get(_arrays_of(state)))
    checkpointer.wait_until_finished()
    (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """Reads ``meta.json`` of a checkpoint folder, with a clear error if absent or corrupt."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise CheckpointError(
            f"{path} is not a complete checkpoint: {META} is missing (an interrupted save?)."
        )
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{meta_path} is corrupt ({error}); delete the folder.") from error


def restore_checkpoint(path: str | Path, state: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores the arrays saved at ``path`` into the structure of ``state``.

    Args:
      path: a checkpoint folder written by :func:`save_checkpoint`.
      state: a state with the same model and optimizer (its values are ignored).

    Returns:
      ``(restored_state, meta)``.

    Raises:
      CheckpointError: the folder is missing, incomplete, or holds other shapes.
    """
    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist.")
    meta = read_meta(path)
    target = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), np.asarray(leaf).dtype),
        jax.device_get(_arrays_of(state)),
    )
    try:
        arrays = ocp.StandardCheckpointer().restore(path / STATE, target)
    except Exception as error:  # orbax raises several types for mismatched trees
        raise CheckpointError(
            f"cannot restore {path}: {error}. Was it written for a different model or optimizer?"
        ) from error
    restored = state.replace(
        params=arrays["params"],
        opt_state=arrays["opt_state"],
        batch_stats=arrays["batch_stats"] if state.batch_stats else state.batch_stats,
        step=arrays["step"],
        carry=arrays["carry"] if state.carry is not None else state.carry,
    )
    return restored, meta


def step_folder(directory: str | Path, step: int) -> Path:
    """The folder name of the checkpoint at ``step`` inside ``directory``."""
    return Path(directory) / f"{_PREFIX}{step:010d}"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete step checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    folders = [p for p in directory.glob(f"{_PREFIX}*") if p.is_dir() and (p / META).is_file()]
    return sorted(folders, key=lambda p: p.name)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or ``None``."""
    folders = list_checkpoints(directory)
    return folders[-1] if folders else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Deletes all but the ``keep`` newest step checkpoints."""
    for folder in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
