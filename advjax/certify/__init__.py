"""Certified robustness: interval bounds, CROWN, verified accuracy, randomized smoothing.

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
from advjax.certify._training import (
    batched_margin_lower_bounds,
    certified_training,
    crown_ibp_training,
    gaussian_noise_training,
    ibp_schedules,
    ibp_training,
    ramp_schedule,
)

__all__ = [
    "ramp_schedule",
    "ibp_training",
    "ibp_schedules",
    "crown_ibp_training",
    "certified_training",
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
    "gaussian_noise_training",
    "interval_bounds",
    "linear_bounds",
    "margin_bounds",
    "sample_counts",
    "smooth_certify",
    "smooth_predict",
    "specification_matrix",
]
