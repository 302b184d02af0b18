"""Certified robustness: interval bounds, CROWN, verified accuracy, randomized smoothing.

certify computes bounds and certificates only; the certified training
objectives that minimise a loss of them (``ibp_training``, ``crown_ibp_training``,
``certified_training``, ``gaussian_noise_training``, ``ibp_schedules``) live in
:mod:`advjax.train`, which imports certify (never the other way round).

Example:
    >>> import jax.numpy as jnp
    >>> from advjax.certify import interval_bounds
    >>> interval_bounds(jnp.tanh)(jnp.array(0.0), jnp.array(1.0))[0].tolist()
    0.0
"""

from advjax.certify._certified import (
    METHODS,
    certified_accuracy,
    certified_margins,
    specification_matrix,
)
from advjax.certify._crown import (
    CROWN_RULES,
    crown_bounds,
    crown_ibp_bounds,
    linear_bounds,
    margin_bounds,
)
from advjax.certify._interval import INTERVAL_RULES, interval_bounds
from advjax.certify._jaxpr_interp import Interval, UnsupportedPrimitiveError
from advjax.certify._margins import batched_margin_lower_bounds
from advjax.certify._report import certified_markdown, certified_report
from advjax.certify._smoothing import (
    ABSTAIN,
    binomial_test_two_sided,
    certified_accuracy_at_radii,
    clopper_pearson_lower,
    gaussian_noise_augment,
    sample_counts,
    smooth_certify,
    smooth_predict,
)

__all__ = [
    "certified_report",
    "certified_markdown",
    "batched_margin_lower_bounds",
    "ABSTAIN",
    "CROWN_RULES",
    "INTERVAL_RULES",
    "Interval",
    "METHODS",
    "UnsupportedPrimitiveError",
    "binomial_test_two_sided",
    "certified_accuracy",
    "certified_accuracy_at_radii",
    "certified_margins",
    "clopper_pearson_lower",
    "crown_bounds",
    "crown_ibp_bounds",
    "gaussian_noise_augment",
    "interval_bounds",
    "linear_bounds",
    "margin_bounds",
    "sample_counts",
    "smooth_certify",
    "smooth_predict",
    "specification_matrix",
]


_MOVED_TO_TRAIN = {
    "certified_training": "advjax.train.certified_training",
    "crown_ibp_training": "advjax.train.crown_ibp_training (beta is now the CROWN-IBP weight)",
    "gaussian_noise_training": "advjax.train.gaussian_noise_training",
    "ibp_schedules": "advjax.train.ibp_schedules",
    "ibp_training": "advjax.train.ibp_training",
    "ramp_schedule": "advjax.train.epsilon_ramp (initial=start, epsilon=end)",
}


def __getattr__(name: str):
    if name in _MOVED_TO_TRAIN:
        raise AttributeError(
            f"advjax.certify.{name} moved: use {_MOVED_TO_TRAIN[name]}. certify exposes "
            "bounds only; training objectives live in advjax.train."
        )
    raise AttributeError(f"module 'advjax.certify' has no attribute {name!r}")
