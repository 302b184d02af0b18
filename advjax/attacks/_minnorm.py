"""Shared pieces of the minimum-norm attacks (DeepFool, FAB, C&W, EAD, DDN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax.attacks._core import _select, project_to_threat
from advjax.attacks._threat import ThreatModel
from advjax.losses import cw_margin


def within_budget(threat: ThreatModel, x, x_adv, eps, clip_min, clip_max):
    """Returns ``x_adv`` if ``eps`` is ``None``, else ``x_adv`` projected into the ``eps``-ball.

    For evaluation at a fixed budget: a larger perturbation is shrunk (and usually fails).
    """
    if eps is None:
        return x_adv
    return project_to_threat(threat, x, x_adv, eps, clip_min, clip_max)


def shrink_along_segment(logits_fn, x, x_adv, labels, steps: int):
    """Per example, the point closest to ``x`` on the segment ``[x, x_adv]`` still misclassified.

    A bisection over ``t`` in ``x + t (x_adv - x)`` (``steps`` forward passes, each
    halving the interval); the segment lies in the box when both ends do. Points
    whose ``x_adv`` is not misclassified are returned unchanged.
    """
    delta = x_adv - x
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)

    def fooled(t):
        return jnp.argmax(logits_fn(x + t.reshape(shape) * delta), -1) != labels

    def halve(_, bounds):
        low, high = bounds
        mid = (low + high) / 2
        hit = fooled(mid)
        return jnp.where(hit, low, mid), jnp.where(hit, mid, high)

    ones = jnp.ones(x.shape[0], x.dtype)
    _, high = jax.lax.fori_loop(0, steps, halve, (jnp.zeros_like(ones), ones))
    return jnp.where(fooled(ones).reshape(shape), x + high.reshape(shape) * delta, x_adv)


def class_jacobian(logits_fn, x):
    """``(logits[B, K], jacobian[K, B, ...])`` w.r.t. the input, one backward pass per class."""
    logits, vjp = jax.vjp(logits_fn, x)
    eye = jnp.eye(logits.shape[-1], dtype=logits.dtype)
    (jac,) = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, logits.shape)))(eye)
    # An example with a non-finite Jacobian gets none (no step), as attacks' gradients do.
    ok = jnp.all(jnp.isfinite(jac.reshape(jac.shape[0], jac.shape[1], -1)), axis=(0, 2))
    jac = jnp.where(ok.reshape((1, -1) + (1,) * (jac.ndim - 2)), jac, 0.0)
    return logits, jac


def keep_smaller(better, new, old):
    return _select(better, new, old)


def margin_hinge(logits, labels, confidence: float, targeted: bool):
    """C&W's objective f6 ``max(z_y - max_{j != y} z_j + kappa, 0)`` (targeted: reversed).

    Zero once the example is misclassified by at least ``kappa`` (towards the
    target when ``targeted``).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._minnorm import margin_hinge
      >>> margin_hinge(jnp.array([[2.0, 0.5], [0.0, 1.0]]), jnp.array([0, 0]), 0.0, False).tolist()
      [1.5, 0.0]
    """
    m = cw_margin(logits, labels)  # max_other - z_y
    return jnp.maximum((m if targeted else -m) + confidence, 0.0)


def margin_success(logits, labels, confidence: float, targeted: bool):
    """Misclassified (or on the target) with a margin of at least ``kappa``, as in C&W.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._minnorm import margin_success
      >>> margin_success(jnp.array([[2.0, 0.5], [0.0, 1.0]]), jnp.array([0, 0]), 0.5,
      ...                False).tolist()
      [False, True]
    """
    pred = jnp.argmax(logits, -1)
    m = cw_margin(logits, labels)
    ok = (-m >= confidence) if targeted else (m >= confidence)
    return ok & ((pred == labels) if targeted else (pred != labels))


def constant_search_start(x, initial_const: float):
    """The carry of C&W's search over ``c`` before its first round.

    Returns:
      ``(const, lower, upper, best_distance, best_x)``: ``[B]`` constants at
      ``initial_const``, lower bounds 0, upper bounds ``1e10`` (none known),
      best distances ``inf`` and the inputs as the best points.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._minnorm import constant_search_start
      >>> const, lower, upper, best, _ = constant_search_start(jnp.zeros((2, 3)), 1e-3)
      >>> const.tolist(), best.tolist()
      ([0.0010000000474974513, 0.0010000000474974513], [inf, inf])
    """
    batch = x.shape[0]
    return (
        jnp.full((batch,), initial_const, jnp.float32),
        jnp.zeros(batch, jnp.float32),
        jnp.full((batch,), 1e10, jnp.float32),
        jnp.full((batch,), jnp.inf, jnp.float32),
        x,
    )


def bisect_constant(succeeded, const, lower, upper):
    """C&W's search over the constant ``c``: x10 until a success, then bisection.

    Args:
      succeeded: ``[B]`` whether the round with ``const`` found an adversarial point.
      const: ``[B]`` this round's constant.
      lower: ``[B]`` the largest constant known to fail.
      upper: ``[B]`` the smallest constant known to succeed (``1e10``: none yet).

    Returns:
      ``(const, lower, upper)`` for the next round.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._minnorm import bisect_constant
      >>> c, lo, up = bisect_constant(jnp.array([True, False]), jnp.array([1.0, 1.0]),
      ...                             jnp.zeros(2), jnp.full(2, 1e10))
      >>> c.tolist(), up.tolist()
      ([0.5, 10.0], [1.0, 10000000000.0])
    """
    upper = jnp.where(succeeded, jnp.minimum(upper, const), upper)
    lower = jnp.where(succeeded, lower, jnp.maximum(lower, const))
    const = jnp.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return const, lower, upper


def abort_early_check(check, loss, previous_loss, stalled):
    """C&W's abort-early rule, per example: at a check, stop where the loss fell by < 0.01%.

    Args:
      check: whether this iteration is a check (every tenth of the steps).
      loss: ``[B]`` the loss now.
      previous_loss: ``[B]`` the loss at the last check (``inf`` before the first).
      stalled: ``[B]`` examples already stopped.

    Returns:
      ``(stalled, previous_loss)`` after this iteration.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._minnorm import abort_early_check
      >>> stalled, prev = abort_early_check(True, jnp.array([1.0, 0.5]), jnp.array([1.0, 1.0]),
      ...                                   jnp.array([False, False]))
      >>> stalled.tolist(), prev.tolist()
      ([True, False], [1.0, 0.5])
    """
    stop = check & (loss > previous_loss * 0.9999)
    return stalled | stop, jnp.where(check, loss, previous_loss)
