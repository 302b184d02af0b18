"""Shared pieces of the minimum-norm attacks (DeepFool, FAB, C&W, DDN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax.attacks._core import _select, project_to_threat
from advjax.attacks._threat import ThreatModel


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
