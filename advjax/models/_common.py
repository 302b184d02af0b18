"""Small shared helpers for the model zoo (plain, IBP-friendly ops only)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def flatten(x: jax.Array) -> jax.Array:
    """Flattens all but the leading (batch) axis, in NHWC (row-major) order.

    Args:
      x: Array of shape ``[B, ...]``.

    Returns:
      Array of shape ``[B, prod(...)]``.

    Example:
      >>> import jax.numpy as jnp
      >>> flatten(jnp.zeros((2, 7, 7, 32))).shape
      (2, 1568)
    """
    return jnp.reshape(x, (x.shape[0], -1))


def normalize(
    x: jax.Array,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> jax.Array:
    """Per-channel affine input normalisation ``(x - mean) / std``.

    Either argument may be ``None`` (no shift / no scaling). Implemented with a
    subtraction and a multiplication by constants, so interval-bound
    propagation treats it as an affine layer.

    Args:
      x: NHWC input.
      mean: Per-channel mean (length ``C`` or scalar-like), or ``None``.
      std: Per-channel standard deviation, or ``None``.

    Returns:
      The normalised input, same shape and dtype as ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> normalize(jnp.ones((1, 2, 2, 3)), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))[0, 0, 0]
      Array([2., 2., 2.], dtype=float32)
    """
    if mean is not None:
        x = x - jnp.asarray(mean, dtype=x.dtype)
    if std is not None:
        x = x * (1.0 / jnp.asarray(std, dtype=x.dtype))
    return x
