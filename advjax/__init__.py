"""advjax: JAX-native adversarial robustness.

Attacks, robust training and certification as composable JAX transforms.
"""

from advjax import attacks, losses
from advjax.attacks import (
    Attack,
    LogitsFn,
    ThreatModel,
    fgm,
    fgsm,
    over_epsilons,
    pgd,
    with_restarts,
)

__version__ = "0.1.0"

__all__ = [
    "Attack",
    "LogitsFn",
    "ThreatModel",
    "attacks",
    "fgm",
    "fgsm",
    "losses",
    "over_epsilons",
    "pgd",
    "with_restarts",
]
