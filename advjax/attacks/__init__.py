"""Attacks as pure functions: ``attack(logits_fn, x, y, *, key) -> x_adv``."""

from advjax.attacks._core import Attack, LogitsFn, is_successful, projected_gradient_ascent
from advjax.attacks._fgsm import fgm, fgsm
from advjax.attacks._pgd import pgd
from advjax.attacks._threat import ThreatModel, get_threat_model, l2, linf
from advjax.attacks._transforms import over_epsilons, restart_keys, with_restarts

__all__ = [
    "Attack",
    "LogitsFn",
    "ThreatModel",
    "fgm",
    "fgsm",
    "get_threat_model",
    "is_successful",
    "l2",
    "linf",
    "over_epsilons",
    "pgd",
    "projected_gradient_ascent",
    "restart_keys",
    "with_restarts",
]
