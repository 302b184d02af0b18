"""Verified (certified) robust accuracy under L-infinity perturbations."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import as_int_labels, check_batch, check_epsilon
from advjax._compile import per_model
from advjax.certify._crown import linear_bounds

__all__ = ["METHODS", "specification_matrix", "certified_accuracy", "certified_margins"]

METHODS = ("ibp", "crown", "crown-ibp")
"""Valid ``method`` names for :func:`certified_accuracy`."""


def specification_matrix(y, num_classes: int):
    """Margin specification ``C`` with rows ``e_y - e_j`` for every class ``j``.

    Row ``j == y`` is zero. ``C @ logits`` gives ``logit_y - logit_j``.

    Args:
        y: Integer label (scalar) or labels of shape ``(B,)``.
        num_classes: Number of classes.

    Returns:
        Array of shape ``(num_classes, num_classes)`` (or ``(B, ...)`` for batches).

    Example:
        >>> specification_matrix(1, 3).tolist()
        [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, -1.0]]
    """
    onehot = jax.nn.one_hot(y, num_classes)
    return onehot[..., None, :] - jnp.eye(num_classes)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {list(METHODS)}")


def _check_eps(eps) -> None:
    if np.ndim(eps) > 1:
        raise ValueError(
            f"eps must be a scalar or a vector of radii (E,), got shape {np.shape(eps)}"
        )
    check_epsilon(eps)


def _checked_labels(logits_fn, x, y, clip_min, clip_max):
    """The validation layer for certification; returns integer labels ``[B]``."""
    bounded = clip_min is not None and clip_max is not None
    check_batch(logits_fn, x, y, *((clip_min, clip_max) if bounded else (None, None)))
    return as_int_labels(y)


def certified_margins(
    logits_fn: Callable,
    x,
    y,
    eps,
    *,
    method: str = "ibp",
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
):
    """Lower bounds of ``logit_y - logit_j`` over the clipped L-inf ball.

    Args:
        logits_fn: Batched model ``x[B, ...] -> logits[B, num_classes]``.
        x: Inputs of shape ``(B, ...)``.
        y: Integer labels ``(B,)`` or one-hot rows ``(B, num_classes)``.
        eps: Scalar radius or vector of radii of shape ``(E,)``.
        method: ``"ibp"`` (with specification elision), ``"crown"`` or
            ``"crown-ibp"``.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        Array ``(B, num_classes)`` (or ``(E, B, num_classes)``) with ``+inf`` in
        the label column.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> m = certified_margins(f, jnp.array([[0.5]]), jnp.array([0]), 0.1)
        >>> [round(float(v), 4) for v in m[0]]
        [inf, 0.8]
    """
    _check_method(method)
    _check_eps(eps)
    x = jnp.asarray(x)
    y = _checked_labels(logits_fn, x, y, clip_min, clip_max)
    num_classes = jax.eval_shape(logits_fn, x[:1]).shape[-1]
    run = _margins_program(logits_fn, method, clip_min, clip_max, num_classes)
    return run(jnp.asarray(x), jnp.asarray(y), jnp.asarray(eps, jnp.result_type(x)))


@per_model
def _margins_program(logits_fn, method, clip_min, clip_max, num_classes):
    """The jitted ``(x, y, eps) -> margins`` of :func:`certified_margins`, built once per model."""
    bounds = linear_bounds(lambda xi: logits_fn(xi[None])[0], method)

    def one(xi, yi, e):
        lo = xi - e
        hi = xi + e
        if clip_min is not None:
            lo, hi = jnp.maximum(lo, clip_min), jnp.maximum(hi, clip_min)
        if clip_max is not None:
            lo, hi = jnp.minimum(lo, clip_max), jnp.minimum(hi, clip_max)
        spec = specification_matrix(yi, num_classes).astype(xi.dtype)
        margin_lo, _ = bounds(lo, hi, spec)
        return jnp.where(jnp.arange(num_classes) == yi, jnp.inf, margin_lo)

    @jax.jit
    def run(x, y, eps):
        per_batch = jax.vmap(one, in_axes=(0, 0, None))
        if jnp.ndim(eps) == 0:
            return per_batch(x, y, eps)
        return jax.vmap(per_batch, in_axes=(None, None, 0))(x, y, eps)

    return run


def certified_accuracy(
    logits_fn: Callable,
    x,
    y,
    eps,
    *,
    method: str = "ibp",
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
):
    """Per-example certificates of L-inf robustness (verified accuracy).

    Example ``i`` is certified when the lower bound of ``logit_y - logit_j`` over
    ``{x' : |x' - x_i|_inf <= eps, clip_min <= x' <= clip_max}`` is positive for
    every ``j != y_i``, bounded with IBP plus specification elision (Gowal et al.,
    2018, arXiv:1810.12715), CROWN (Zhang et al., 2018, arXiv:1811.00866) or
    CROWN-IBP (Zhang et al., 2020, arXiv:1906.06316). The mean
    of the result is the verified accuracy. Certified implies correctly
    classified.

    Args:
        logits_fn: Batched model ``x[B, ...] -> logits[B, num_classes]``
            (e.g. ``advjax.models.eval_logits_fn(model, variables)``).
        x: Inputs of shape ``(B, ...)``.
        y: Integer labels of shape ``(B,)``.
        eps: Scalar radius, or vector of radii of shape ``(E,)`` (vmapped).
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        Boolean array of shape ``(B,)``, or ``(E, B)`` for a vector ``eps``.

    Raises:
        ValueError: For an unknown ``method``, a negative or NaN ``eps``, or
            inputs and labels the validation layer refuses (see ``docs/validation.md``).

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], 1.0 - x[:, 0]], axis=1)
        >>> x, y = jnp.array([[0.9], [0.55]]), jnp.array([0, 0])
        >>> certified_accuracy(f, x, y, 0.1).tolist()
        [True, False]
        >>> certified_accuracy(f, x, y, jnp.array([0.0, 0.3])).tolist()
        [[True, True], [True, False]]
    """
    margins = certified_margins(
        logits_fn, x, y, eps, method=method, clip_min=clip_min, clip_max=clip_max
    )
    # A NaN margin (an unsound rule would give one) never certifies.
    return jnp.all(margins > 0, axis=-1)
