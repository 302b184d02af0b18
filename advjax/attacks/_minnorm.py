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


def class_jacobian(logits_fn, x):
    """``(logits[B, K], jacobian[K, B, ...])`` w.r.t. the input, one backward pass per class."""
    logits, vjp = jax.vjp(logits_fn, x)
    eye = jnp.eye(logits.shape[-1], dtype=logits.dtype)
    (jac,) = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, logits.shape)))(eye)
    return logits, jac


def keep_smaller(better, new, old):
    return _select(better, new, old)
