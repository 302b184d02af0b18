"""Differentiable margin lower bounds for a batch: IBP with elision, CROWN-IBP, or a mix.

These are the bounds that certified training (:mod:`advjax.train`'s
``ibp_training`` and ``crown_ibp_training``) minimises a loss of. The tape of the
per-example network is recorded once with batched boxes and the backward passes
run on all examples together.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax.certify._crown import _backward, _Node, _record_batched

__all__ = ["batched_margin_lower_bounds"]


def _batch_lower_bounds(fn, lo, hi, specs, use_crown: bool):
    """Lower bounds of ``specs[i] @ fn(x_i)`` over ``[lo_i, hi_i]`` for every example ``i``.

    Returns the IBP (elided) bounds, and with ``use_crown`` the pair
    ``(ibp, crown_ibp)``.
    """
    tape = _record_batched(fn, lo, hi)
    if len(tape.outputs) != 1:
        raise ValueError("Certified training needs a model with a single logits output.")
    (out,) = tape.outputs
    if not isinstance(out, _Node):  # constant network
        value = specs @ jnp.asarray(out).reshape(-1)
        return (value, value) if use_crown else value
    out_shape = tape.boxes[out.id].lower.shape[1:]
    a0 = specs.reshape((*specs.shape[:2], *out_shape))
    ibp = _backward(tape, out.id, a0, "concretize")
    if not use_crown:
        return ibp
    return ibp, _backward(tape, out.id, a0, "relax")


def batched_margin_lower_bounds(
    logits_fn: Callable,
    x,
    y,
    eps,
    *,
    beta=0.0,
    clip_min: float | None = 0.0,
    clip_max: float | None = 1.0,
):
    """Differentiable lower bounds of the margins ``logit_y - logit_j`` over an L-inf ball.

    The bounds are ``beta * CROWN-IBP + (1 - beta) * IBP``, with ``beta`` the
    CROWN-IBP weight of Zhang et al., "Towards Stable and Efficient Training of
    Verifiably Robust Neural Networks" (ICLR 2020, arXiv:1906.06316) and IBP with
    the elision of the specification into the last affine layer (Gowal et al.,
    arXiv:1810.12715). A concrete ``beta == 0`` traces no CROWN pass. A traced
    ``beta`` (a schedule) always runs the CROWN-IBP pass and uses the IBP bounds
    alone where ``beta <= 0``; to skip the pass once a schedule has reached 0,
    continue with a concrete ``beta=0`` (the ``crown_ibp`` recipe of ``advjax train`` does
    after the ramp).

    Args:
        logits_fn: Batched eval-mode model ``x[B, ...] -> logits[B, K]`` with a
            single array output.
        x: Inputs ``(B, ...)``.
        y: Integer labels ``(B,)``.
        eps: Scalar L-inf radius, in input units (may be traced).
        beta: CROWN-IBP weight in ``[0, 1]`` (may be traced): ``0`` gives pure
            IBP, ``1`` pure CROWN-IBP.
        clip_min: Lower end of the valid input range (``None``: no clipping).
        clip_max: Upper end of the valid input range (``None``: no clipping).

    Returns:
        Array ``(B, K)`` of lower bounds; the label's column is 0.

    Raises:
        UnsupportedPrimitiveError: If the model uses a primitive without a bound
            rule on an input-dependent value (CROWN-IBP: a non-linearity other
            than ``max``/``min`` with a constant).
        ValueError: If the model has more than one output.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> m = batched_margin_lower_bounds(f, jnp.array([[0.5]]), jnp.array([0]), 0.1)
        >>> [round(float(v), 4) for v in m[0]]
        [0.0, 0.8]
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    num_classes = jax.eval_shape(logits_fn, x[:1]).shape[-1]
    lo, hi = x - eps, x + eps
    if clip_min is not None:
        lo, hi = jnp.maximum(lo, clip_min), jnp.maximum(hi, clip_min)
    if clip_max is not None:
        lo, hi = jnp.minimum(lo, clip_max), jnp.minimum(hi, clip_max)
    # Only the rows j != y are bounded (the label's row of the specification is
    # zero, its bound is 0): one backward row fewer per example.
    others = jnp.arange(max(num_classes - 1, 0))[None] + (
        jnp.arange(max(num_classes - 1, 0))[None] >= y[:, None]
    )
    specs = jax.nn.one_hot(y, num_classes, dtype=x.dtype)[:, None] - jax.nn.one_hot(
        others, num_classes, dtype=x.dtype
    )

    def fn(xi):
        return logits_fn(xi[None])[0]

    static_zero = isinstance(beta, (int, float)) and float(beta) == 0.0
    if static_zero:
        m = _batch_lower_bounds(fn, lo, hi, specs, False)
    else:
        # Not lax.cond: XLA:CPU keeps convolutions inside a conditional in a slow,
        # non-canonical form (a CROWN-IBP training step took 4x as long).
        beta = jnp.asarray(beta, x.dtype)
        ibp, crown = _batch_lower_bounds(fn, lo, hi, specs, True)
        # Select before mixing: 0 * an infinite CROWN bound would give NaN gradients.
        crown = jnp.where(beta > 0.0, crown, ibp)
        m = beta * crown + (1.0 - beta) * ibp
    rows = jnp.arange(x.shape[0])[:, None]
    return jnp.zeros((x.shape[0], num_classes), m.dtype).at[rows, others].set(m)
