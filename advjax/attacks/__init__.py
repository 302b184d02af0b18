"""Attacks as pure functions: ``attack(logits_fn, x, y, *, key) -> x_adv``."""

from advjax.attacks._adaptive import bpda, eot, eot_logits
from advjax.attacks._apgd import (
    APGDProblem,
    APGDState,
    apgd,
    apgd_init,
    apgd_iterate,
    apgd_result,
    apgd_t,
    apgd_variant,
    checkpoint_schedule,
)
from advjax.attacks._core import (
    Attack,
    LogitsFn,
    is_better,
    is_successful,
    predicted_class,
    project_to_threat,
    projected_gradient_ascent,
)
from advjax.attacks._cw import cw_l2
from advjax.attacks._ddn import ddn
from advjax.attacks._deepfool import deepfool
from advjax.attacks._ead import ead
from advjax.attacks._fab import fab
from advjax.attacks._fgsm import fgm, fgsm
from advjax.attacks._guard import REJECTION_REASONS, Constraints, finite_gradient, guarded, verify
from advjax.attacks._hopskipjump import hopskipjump
from advjax.attacks._jsma import jsma
from advjax.attacks._mifgsm import bim, mifgsm
from advjax.attacks._onepixel import one_pixel
from advjax.attacks._pgd import pgd
from advjax.attacks._square import square, square_from
from advjax.attacks._threat import (
    THREAT_MODELS,
    ThreatModel,
    get_threat_model,
    l0,
    l1,
    l1_sparse,
    l2,
    linf,
)
from advjax.attacks._transforms import (
    choose_targets,
    early_stop,
    over_epsilons,
    per_example_keys,
    restart_keys,
    targeted,
    with_restarts,
    worst_case,
)
from advjax.attacks._universal import apply_universal, universal_perturbation

__all__ = [
    "APGDProblem",
    "APGDState",
    "apgd_init",
    "apgd_iterate",
    "apgd_result",
    "apgd_variant",
    "THREAT_MODELS",
    "REJECTION_REASONS",
    "Attack",
    "Constraints",
    "LogitsFn",
    "ThreatModel",
    "apgd",
    "apgd_t",
    "apply_universal",
    "bim",
    "bpda",
    "checkpoint_schedule",
    "choose_targets",
    "cw_l2",
    "ddn",
    "deepfool",
    "ead",
    "early_stop",
    "eot",
    "eot_logits",
    "fab",
    "fgm",
    "fgsm",
    "finite_gradient",
    "get_threat_model",
    "guarded",
    "hopskipjump",
    "is_better",
    "is_successful",
    "jsma",
    "l0",
    "l1",
    "l1_sparse",
    "l2",
    "linf",
    "mifgsm",
    "one_pixel",
    "predicted_class",
    "over_epsilons",
    "per_example_keys",
    "pgd",
    "project_to_threat",
    "projected_gradient_ascent",
    "restart_keys",
    "square",
    "square_from",
    "targeted",
    "universal_perturbation",
    "verify",
    "with_restarts",
    "worst_case",
]
