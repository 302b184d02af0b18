"""Robust training: objectives over a Flax ``TrainState``, one compiled step, ``fit``."""

from advjax.models import mixed_precision
from advjax.train._awp import awp, weight_perturbation
from advjax.train._callbacks import EarlyStopping, robust_eval_fn
from advjax.train._certified import (
    certified_training,
    crown_ibp_training,
    gaussian_noise_training,
    ibp_schedules,
    ibp_training,
)
from advjax.train._checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    read_meta,
    restore_checkpoint,
    save_checkpoint,
)
from advjax.train._distillation import distillation
from advjax.train._fast import fgsm_rs
from advjax.train._fit import FitResult, fit
from advjax.train._free import free_at, free_at_carry
from advjax.train._mart import mart
from advjax.train._objectives import (
    AdversarialObjective,
    Objective,
    accuracy,
    as_schedule,
    pgd_at,
    standard,
)
from advjax.train._regularizers import input_gradient_penalty
from advjax.train._schedules import (
    cosine_lr,
    curriculum,
    cyclic_lr,
    epsilon_ramp,
    piecewise_lr,
    staged_step,
    triangular_lr,
)
from advjax.train._state import TrainState, eval_logits, train_logits
from advjax.train._step import make_step
from advjax.train._trades import gaussian_start_linf, trades

__all__ = [
    "AdversarialObjective",
    "CheckpointError",
    "EarlyStopping",
    "FitResult",
    "Objective",
    "TrainState",
    "accuracy",
    "as_schedule",
    "awp",
    "certified_training",
    "cosine_lr",
    "crown_ibp_training",
    "curriculum",
    "cyclic_lr",
    "distillation",
    "epsilon_ramp",
    "eval_logits",
    "fgsm_rs",
    "fit",
    "free_at",
    "free_at_carry",
    "gaussian_noise_training",
    "gaussian_start_linf",
    "ibp_schedules",
    "ibp_training",
    "input_gradient_penalty",
    "latest_checkpoint",
    "list_checkpoints",
    "make_step",
    "mart",
    "mixed_precision",
    "pgd_at",
    "piecewise_lr",
    "read_meta",
    "restore_checkpoint",
    "robust_eval_fn",
    "save_checkpoint",
    "staged_step",
    "standard",
    "train_logits",
    "trades",
    "triangular_lr",
    "weight_perturbation",
]
