"""Robust training: objectives over a Flax ``TrainState``, one compiled step, ``fit``."""

from advjax.train._checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    read_meta,
    restore_checkpoint,
    save_checkpoint,
)
from advjax.train._fit import FitResult, fit
from advjax.train._objectives import Objective, accuracy, as_schedule, pgd_at, standard
from advjax.train._state import TrainState, eval_logits, train_logits
from advjax.train._step import make_step

__all__ = [
    "CheckpointError",
    "FitResult",
    "Objective",
    "TrainState",
    "accuracy",
    "as_schedule",
    "eval_logits",
    "fit",
    "latest_checkpoint",
    "list_checkpoints",
    "make_step",
    "pgd_at",
    "read_meta",
    "restore_checkpoint",
    "save_checkpoint",
    "standard",
    "train_logits",
]
