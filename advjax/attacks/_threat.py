"""Threat models: the set of allowed perturbations, as small objects.

A threat model knows how to measure a perturbation (``norm``), project one back
onto the ball of radius ``eps`` (``project``), turn a gradient into a steepest
ascent direction of unit size (``direction``), and draw a random start inside
the ball (``random_init``). Perturbations are ``[B, ...]``; ``eps`` is a scalar
or broadcastable per-example ``[B]`` array. Adding a norm is adding one object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

_TINY = 1e-12


def _per_example(value, like: jax.Array) -> jax.Array:
    """Reshapes a scalar or ``[B]`` value to broadcast against ``like[B, ...]``."""
    value = jnp.asarray(value, dtype=like.dtype)
    return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))


def _flat_norm(delta: jax.Array, ord_) -> jax.Array:
    return jnp.linalg.norm(delta.reshape(delta.shape[0], -1), ord=ord_, axis=-1)


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """A perturbation set ``{delta : norm(delta) <= eps}``.

    Attributes:
      name: short name (``"linf"``, ``"l2"``).
      norm: ``delta[B, ...] -> [B]``.
      project: ``(delta, eps) -> delta`` onto the ball.
      direction: ``grad -> unit steepest-ascent direction`` for this norm.
      random_init: ``(key, shape, eps) -> delta`` drawn inside the ball.
    """

    name: str
    norm: Callable[[jax.Array], jax.Array]
    project: Callable[[jax.Array, jax.Array], jax.Array]
    direction: Callable[[jax.Array], jax.Array]
    random_init: Callable[[jax.Array, tuple, jax.Array], jax.Array]


def _linf_project(delta, eps):
    eps = _per_example(eps, delta)
    return jnp.clip(delta, -eps, eps)


def _linf_init(key, shape, eps):
    unit = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return unit * _per_example(eps, unit)


linf = ThreatModel(
    name="linf",
    norm=lambda delta: _flat_norm(delta, jnp.inf),
    project=_linf_project,
    direction=jnp.sign,
    random_init=_linf_init,
)
"""The L-infinity ball: every coordinate moves by at most ``eps`` (sign steps)."""


def _l2_project(delta, eps):
    norms = _per_example(_flat_norm(delta, 2), delta)
    eps = _per_example(eps, delta)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(norms, _TINY))


def _l2_direction(grad):
    return grad / jnp.maximum(_per_example(_flat_norm(grad, 2), grad), _TINY)


def _l2_init(key, shape, eps):
    direction_key, radius_key = jax.random.split(key)
    gaussian = jax.random.normal(direction_key, shape)
    dims = 1
    for size in shape[1:]:
        dims *= size
    # Uniform in the ball: radius eps * u^(1/d) along a uniform direction.
    radius = jax.random.uniform(radius_key, (shape[0],)) ** (1.0 / dims)
    return _l2_direction(gaussian) * _per_example(radius, gaussian) * _per_example(eps, gaussian)


l2 = ThreatModel(
    name="l2",
    norm=lambda delta: _flat_norm(delta, 2),
    project=_l2_project,
    direction=_l2_direction,
    random_init=_l2_init,
)
"""The Euclidean ball: normalised-gradient steps, radial projection."""

_THREATS = {"linf": linf, "inf": linf, "l2": l2, "2": l2}


def get_threat_model(norm: str | ThreatModel) -> ThreatModel:
    """Resolves ``"linf"`` / ``"l2"`` (or a ``ThreatModel``) to a threat model.

    Example:
      >>> from advjax.attacks import get_threat_model
      >>> get_threat_model("linf").name
      'linf'
    """
    if isinstance(norm, ThreatModel):
        return norm
    key = str(norm).lower()
    if key in _THREATS:
        return _THREATS[key]
    raise ValueError(f"unknown norm {norm!r}; choose one of ['linf', 'l2'] or pass a ThreatModel.")
