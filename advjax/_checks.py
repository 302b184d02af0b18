"""Input validation shared by attacks, evaluation and training.

Value checks (NaN, range) need concrete arrays; under ``jax.jit`` the inputs are
tracers and only the static checks (shapes, dtypes) run. Public entry points
that are usually called eagerly (evaluation, the CLI) therefore always see the
full set of checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value) -> bool:
    """Whether ``value`` holds real numbers rather than a tracer under a transform."""
    return not isinstance(value, jax.core.Tracer)


def check_epsilon(eps, name: str = "eps") -> None:
    """Raises ``ValueError`` for a negative or non-finite concrete epsilon."""
    if not is_concrete(eps):
        return
    values = np.asarray(eps, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {eps!r}.")
    if np.any(values < 0):
        raise ValueError(
            f"{name} must be >= 0, got {eps!r}: a perturbation budget cannot be negative."
        )


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_range(clip_min: float, clip_max: float) -> None:
    """Raises ``ValueError`` unless ``clip_min < clip_max`` are finite numbers."""
    if not (np.isfinite(clip_min) and np.isfinite(clip_max)) or clip_min >= clip_max:
        raise ValueError(
            f"the valid input range must satisfy clip_min < clip_max, got [{clip_min}, {clip_max}]."
        )


def check_inputs(x, y, clip_min: float, clip_max: float) -> None:
    """Validates a batch ``x`` and its labels or targets ``y``.

    Args:
      x: inputs ``[B, ...]`` of a floating dtype inside ``[clip_min, clip_max]``.
      y: integer labels ``[B]`` or soft targets ``[B, K]`` (floating, rows of
        probabilities).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Raises:
      TypeError: for integer inputs or non-array arguments.
      ValueError: for mismatched batch sizes, NaNs, or values outside the range.
    """
    x_dtype = jnp.result_type(x)
    if not jnp.issubdtype(x_dtype, jnp.floating):
        raise TypeError(
            f"inputs x must be floating point in [{clip_min}, {clip_max}], got dtype {x_dtype}; "
            "convert images with x.astype(jnp.float32) / 255."
        )
    if jnp.ndim(x) < 1 or jnp.ndim(y) < 1:
        raise ValueError(
            f"x and y need a leading batch axis, got shapes {jnp.shape(x)} and {jnp.shape(y)}."
        )
    if jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(
            f"batch sizes differ: x has {jnp.shape(x)[0]} examples but y has {jnp.shape(y)[0]}."
        )
    y_dtype = jnp.result_type(y)
    if jnp.issubdtype(y_dtype, jnp.integer):
        if jnp.ndim(y) != 1:
            raise ValueError(f"integer labels y must have shape [B], got {jnp.shape(y)}.")
    elif jnp.issubdtype(y_dtype, jnp.floating):
        if jnp.ndim(y) != 2:
            raise ValueError(f"soft targets y must have shape [B, K], got {jnp.shape(y)}.")
    else:
        raise TypeError(f"y must hold integer labels or float soft targets, got dtype {y_dtype}.")
    if is_concrete(x):
        values = np.asarray(x)
        if np.isnan(values).any():
            raise ValueError(f"inputs x contain {int(np.isnan(values).sum())} NaN values.")
        low, high = float(values.min(initial=np.inf)), float(values.max(initial=-np.inf))
        if values.size and (low < clip_min or high > clip_max):
            raise ValueError(
                f"inputs x lie in [{low:.4g}, {high:.4g}], outside the declared valid range "
                f"[{clip_min}, {clip_max}]; rescale them (e.g. uint8 images / 255) or pass "
                "clip_min/clip_max matching your data."
            )
    if is_concrete(y) and jnp.issubdtype(y_dtype, jnp.floating) and np.isnan(np.asarray(y)).any():
        raise ValueError("soft targets y contain NaN values.")
