"""Attacks as pure functions: ``attack(logits_fn, x, y, *, key) -> x_adv``."""

from advjax.attacks._apgd import apgd, apgd_t, checkpoint_schedule
from advjax.attacks._core import (
    Attack,
    LogitsFn,
    is_better,
    is_successful,
    project_to_threat,
    projected_gradient_ascent,
)
from advjax.attacks._fgsm import fgm, fgsm
from advjax.attacks._mifgsm import bim, mifgsm
from advjax.attacks._pgd import pgd
from advjax.attacks._square import square
from advjax.attacks._threat import ThreatModel, get_threat_model, l0, l1, l1_sparse, l2, linf
from advjax.attacks._transforms import (
    choose_targets,
    early_stop,
    over_epsilons,
    restart_keys,
    targeted,
    with_restarts,
    worst_case,
)

__all__ = [
    "Attack",
    "LogitsFn",
    "ThreatModel",
    "apgd",
    "apgd_t",
    "bim",
    "checkpoint_schedule",
    "choose_targets",
    "early_stop",
    "fgm",
    "fgsm",
    "get_threat_model",
    "is_better",
    "is_successful",
    "l0",
    "l1",
    "l1_sparse",
    "l2",
    "linf",
    "mifgsm",
    "over_epsilons",
    "pgd",
    "project_to_threat",
    "projected_gradient_ascent",
    "restart_keys",
    "square",
    "targeted",
    "with_restarts",
    "worst_case",
]
