"""Threat models: the set of allowed perturbations, as small objects.

A threat model knows how to measure a perturbation (``norm``), project one back
onto the ball of radius ``eps`` (``project``), turn a gradient into a steepest
ascent direction of unit size (``direction``), and draw a random start inside
the ball (``random_init``). Perturbations are ``[B, ...]``; ``eps`` is a scalar
or broadcastable per-example ``[B]`` array. Adding a norm is adding one object.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TypeVar

import jax
import jax.numpy as jnp

_TINY = 1e-12
T = TypeVar("T")


def per_example_value(value, like: jax.Array) -> jax.Array:
    """Reshapes a scalar or ``[B]`` value to broadcast against ``like[B, ...]``.

    Args:
      value: a scalar or ``[B]``.
      like: ``[B, ...]``.

    Returns:
      ``value`` in ``like.dtype``, shaped ``[B, 1, ..., 1]`` (or a scalar).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._threat import per_example_value
      >>> per_example_value(jnp.array([1.0, 2.0]), jnp.zeros((2, 3, 4))).shape
      (2, 1, 1)
    """
    value = jnp.asarray(value, dtype=like.dtype)
    return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))


def _flat_norm(delta: jax.Array, ord_) -> jax.Array:
    flat = delta.reshape(delta.shape[0], math.prod(delta.shape[1:]))  # also for 0 rows
    return jnp.linalg.norm(flat, ord=ord_, axis=-1)


def _linf_norm(delta: jax.Array) -> jax.Array:
    return _flat_norm(delta, jnp.inf)


def _l2_norm(delta: jax.Array) -> jax.Array:
    return _flat_norm(delta, 2)


def _l1_norm(delta: jax.Array) -> jax.Array:
    return _flat_norm(delta, 1)


@dataclasses.dataclass(frozen=True)
class _ClippedProjection:
    """The default ball ∩ box projection: ``clip(project(delta, eps), low, high)``.

    Feasible (inside both sets) for every norm that clipping a coordinate
    towards zero does not increase, and exact for Linf-like balls. Two threat
    models with the same ``project`` get equal defaults.
    """

    project: Callable[[jax.Array, jax.Array], jax.Array]

    def __call__(self, delta, eps, low, high):
        return jnp.clip(self.project(delta, eps), low, high)


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """A perturbation set ``{delta : norm(delta) <= eps}`` and how attacks move inside it.

    Every attack reads its geometry from these fields, so an attack that needs
    only the generic operations (PGD, FGSM, BIM, MI-FGSM, APGD, universal
    perturbations) works with any threat model, a user-defined one included.
    Attacks whose algorithm differs per norm (Square, FAB, DeepFool, and APGD's
    sparse L1 step) keep a table keyed by the threat model itself (see
    :func:`per_norm`) and refuse one they have no entry for.

    Two threat models are equal (and hash equal) when they describe the same
    set: same ``name``, ``norm``, ``project``, ``box_project`` and
    ``dual_norm``. How an attack starts (``random_init``) or steps
    (``direction``) inside the ball does not count, so
    ``dataclasses.replace(linf, random_init=...)`` is still ``linf`` to a
    per-norm table.

    Attributes:
      name: short name used in messages and reports (``"linf"``, ``"l2"``).
      norm: ``delta[B, ...] -> [B]``, the size of each perturbation; the ball is
        ``norm(delta) <= eps`` and :func:`~advjax.attacks._guard.verify` checks
        exactly that.
      project: ``(delta[B, ...], eps) -> delta`` onto the ball (``eps`` a scalar
        or ``[B]``).
      direction: ``grad[B, ...] -> [B, ...]``, the steepest-ascent direction of
        unit ``norm``; a step size is then measured in this norm.
      random_init: ``(key, shape, eps) -> delta`` drawn inside the ball.
      box_project: ``(delta, eps, low, high) -> delta`` onto the ball
        intersected with the box ``[low, high]`` (``low <= 0 <= high`` per
        coordinate, broadcastable to ``delta``). Left out, it is
        ``clip(project(delta, eps), low, high)``: exact for Linf, feasible for
        every norm that shrinking a coordinate towards zero does not increase.
        Attacks project with this field (:func:`~advjax.attacks.project_to_threat`).
      dual_norm: optional ``w[B, ...] -> [B]``, the dual norm, so that the
        distance from a point to the hyperplane ``{d : w . d = c}`` is
        ``|c| / dual_norm(w)`` (DeepFool, FAB). ``None``: no dual (``l0``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import ThreatModel
      >>> # The "box" ball |delta_i| <= eps with an Linf geometry, built from scratch:
      >>> cube = ThreatModel(
      ...     name="cube",
      ...     norm=lambda d: jnp.abs(d.reshape(d.shape[0], -1)).max(-1),
      ...     project=lambda d, eps: jnp.clip(d, -eps, eps),
      ...     direction=jnp.sign,
      ...     random_init=lambda key, shape, eps: jax.random.uniform(key, shape, minval=-eps,
      ...                                                            maxval=eps),
      ... )
      >>> cube.box_project(jnp.array([[0.5, -0.5]]), 0.2, -0.1, 1.0).tolist()
      [[0.20000000298023224, -0.10000000149011612]]
    """

    name: str
    norm: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False)
    project: Callable[[jax.Array, jax.Array], jax.Array] = dataclasses.field(repr=False)
    direction: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False, compare=False)
    random_init: Callable[[jax.Array, tuple, jax.Array], jax.Array] = dataclasses.field(
        repr=False, compare=False
    )
    box_project: Callable | None = dataclasses.field(default=None, repr=False)
    dual_norm: Callable[[jax.Array], jax.Array] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if self.box_project is None:
            object.__setattr__(self, "box_project", _ClippedProjection(self.project))

    @property
    def box_by_clipping(self) -> bool:
        """Whether ``box_project`` is ``clip(project(delta))``, so a clip to the range does it.

        Attacks then project on the ball and clip the point to the range, without
        building the box's ``[B, ...]`` bounds inside their loops.

        Example:
          >>> from advjax.attacks import l1, linf
          >>> linf.box_by_clipping, l1.box_by_clipping
          (True, False)
        """
        return isinstance(self.box_project, _ClippedProjection)


def _linf_project(delta, eps):
    eps = per_example_value(eps, delta)
    return jnp.clip(delta, -eps, eps)


def _linf_init(key, shape, eps):
    unit = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return unit * per_example_value(eps, unit)


linf = ThreatModel(
    name="linf",
    norm=_linf_norm,
    project=_linf_project,
    direction=jnp.sign,
    random_init=_linf_init,
    dual_norm=_l1_norm,
)
"""The L-infinity ball: every coordinate moves by at most ``eps`` (sign steps)."""


def _l2_project(delta, eps):
    norms = per_example_value(_flat_norm(delta, 2), delta)
    eps = per_example_value(eps, delta)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(norms, _TINY))


def _l2_direction(grad):
    return grad / jnp.maximum(per_example_value(_flat_norm(grad, 2), grad), _TINY)


def _l2_init(key, shape, eps):
    direction_key, radius_key = jax.random.split(key)
    gaussian = jax.random.normal(direction_key, shape)
    # A uniform radius in [0, eps] along a uniform direction (torchattacks' PGDL2 start), not
    # uniform in the ball's volume, which in high dimension sits on the sphere: on MNIST,
    # PGD-40 from the sphere left 1.6 to 2.7 points more robust accuracy (3 seeds, 500 images).
    radius = jax.random.uniform(radius_key, (shape[0],))
    return (
        _l2_direction(gaussian)
        * per_example_value(radius, gaussian)
        * per_example_value(eps, gaussian)
    )


l2 = ThreatModel(
    name="l2",
    norm=_l2_norm,
    project=_l2_project,
    direction=_l2_direction,
    random_init=_l2_init,
    dual_norm=_l2_norm,
)
"""The Euclidean ball: normalised-gradient steps, radial projection, a random start at a
uniform radius in ``[0, eps]`` along a uniform direction."""


def _solve_capped_linear(weights, rates, caps, target):
    """Per row, the smallest ``t >= 0`` with ``sum_i w_i min(t r_i, cap_i) >= target``.

    The left side is piecewise linear and non-decreasing in ``t``; sorting its
    breakpoints ``caps_i / rates_i`` gives the exact solution in ``O(d log d)``.
    Rows whose target is unreachable get the largest breakpoint (all capped).
    ``weights, rates, caps`` are ``[B, d]`` and non-negative, ``target`` is ``[B]``.
    """
    rates = jnp.maximum(rates, 0.0)
    active = (weights * rates > 0) & (caps > 0)
    breaks = jnp.where(active, caps / jnp.where(active, rates, 1.0), 0.0)
    order = jnp.argsort(breaks, axis=-1)
    breaks = jnp.take_along_axis(breaks, order, axis=-1)
    slope_drop = jnp.take_along_axis(jnp.where(active, weights * rates, 0.0), order, axis=-1)
    total_slope = jnp.sum(jnp.where(active, weights * rates, 0.0), axis=-1, keepdims=True)
    # Slope on the interval just after breakpoint k: the coordinates not yet capped.
    slope_after = total_slope - jnp.cumsum(slope_drop, axis=-1)
    widths = jnp.diff(breaks, axis=-1, prepend=jnp.zeros_like(breaks[:, :1]))
    slope_before = jnp.concatenate([total_slope, slope_after[:, :-1]], axis=-1)
    value_at = jnp.cumsum(slope_before * widths, axis=-1)  # g(breaks_k)
    target = target[:, None]
    reached = value_at >= target
    k = jnp.argmax(reached, axis=-1)[:, None]
    any_reached = jnp.any(reached, axis=-1)
    prev_break = jnp.where(k > 0, jnp.take_along_axis(breaks, jnp.maximum(k - 1, 0), -1), 0.0)
    prev_value = jnp.where(k > 0, jnp.take_along_axis(value_at, jnp.maximum(k - 1, 0), -1), 0.0)
    slope = jnp.take_along_axis(slope_before, k, -1)
    t = prev_break + (target - prev_value) / jnp.maximum(slope, _TINY)
    return jnp.where(any_reached, t[:, 0], breaks[:, -1])


def _l1_box_project(delta, eps, low, high):
    """Exact Euclidean projection onto ``{||d||_1 <= eps} ∩ [low, high]`` (``low <= 0 <= high``).

    The solution is ``sign(v) * clip(|v| - lam, 0, cap)`` with ``cap`` the box
    bound on the side of ``v``; ``lam`` solves a piecewise-linear equation
    (Croce & Hein 2021, "Mind the box"), found exactly by sorting breakpoints.
    """
    batch = delta.shape[0]
    v = delta.reshape(batch, -1)
    low = jnp.broadcast_to(low, delta.shape).reshape(batch, -1)
    high = jnp.broadcast_to(high, delta.shape).reshape(batch, -1)
    magnitude = jnp.abs(v)
    cap = jnp.maximum(jnp.where(v >= 0, high, -low), 0.0)
    eps = jnp.broadcast_to(jnp.asarray(eps, v.dtype), (batch,))
    clipped = jnp.minimum(magnitude, cap)
    inside = jnp.sum(clipped, axis=-1) <= eps
    # h(lam) = sum clip(|v| - lam, 0, cap) = sum min(cap, |v|) - sum min(lam - (|v|-cap)_+ ...)
    # Solved as: total - eps = sum min(max(lam - (|v| - cap), 0), min(|v|, cap)); write
    # lam = s and use the capped-linear solver on the shifted variable per coordinate.
    start = jnp.maximum(magnitude - cap, 0.0)
    lam = _solve_shifted(start, clipped, jnp.sum(clipped, -1) - eps)
    lam = jnp.where(inside, 0.0, lam)
    out = jnp.sign(v) * jnp.clip(magnitude - lam[:, None], 0.0, cap)
    return out.reshape(delta.shape)


def _solve_shifted(start, amount, target):
    """Smallest ``s >= 0`` with ``sum_i min(max(s - start_i, 0), amount_i) >= target`` (exact)."""
    # Breakpoints: start_i (slope +1) and start_i + amount_i (slope -1).
    points = jnp.concatenate([start, start + amount], axis=-1)
    changes = jnp.concatenate(
        [jnp.where(amount > 0, 1.0, 0.0), jnp.where(amount > 0, -1.0, 0.0)], axis=-1
    )
    order = jnp.argsort(points, axis=-1)
    points = jnp.take_along_axis(points, order, -1)
    changes = jnp.take_along_axis(changes, order, -1)
    slope_after = jnp.cumsum(changes, axis=-1)
    widths = jnp.diff(points, axis=-1, prepend=jnp.zeros_like(points[:, :1]))
    slope_before = jnp.concatenate([jnp.zeros_like(points[:, :1]), slope_after[:, :-1]], -1)
    value_at = jnp.cumsum(slope_before * widths, axis=-1)
    target = target[:, None]
    reached = value_at >= target
    k = jnp.argmax(reached, axis=-1)[:, None]
    any_reached = jnp.any(reached, axis=-1)
    km1 = jnp.maximum(k - 1, 0)
    prev_point = jnp.take_along_axis(points, km1, -1)
    prev_value = jnp.take_along_axis(value_at, km1, -1)
    slope = jnp.take_along_axis(slope_before, k, -1)
    s = prev_point + (target - prev_value) / jnp.maximum(slope, _TINY)
    s = jnp.where(k > 0, s, points[:, :1])
    return jnp.where(any_reached, s[:, 0], points[:, -1])


def _l1_project(delta, eps):
    return _l1_box_project(
        delta, eps, -jnp.inf * jnp.ones_like(delta), jnp.inf * jnp.ones_like(delta)
    )


def _top_k_mask(values, k):
    flat = values.reshape(values.shape[0], -1)
    threshold = jax.lax.top_k(flat, k)[0][:, -1:]
    return (flat >= threshold).reshape(values.shape)


def sparse_l1_direction(grad: jax.Array, share) -> jax.Array:
    """The sparse L1 steepest-ascent step with a per-example share of coordinates.

    Keeps the sign of the coordinates whose ``|grad|`` is at least the
    ``(1 - share)``-quantile (about ``share * D`` of them, ties included), scaled
    to unit L1 norm: the step of l1-APGD (Croce & Hein 2021, "Mind the box"),
    whose share adapts per example during the attack. Zero gradients get no mass.

    Args:
      grad: ``[B, ...]`` gradients.
      share: scalar or ``[B]`` in ``(0, 1]``.

    Returns:
      ``[B, ...]`` with unit L1 norm per example (zero where ``grad`` is zero).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._threat import sparse_l1_direction
      >>> sparse_l1_direction(jnp.array([[0.1, -3.0, 2.0, 0.0]]), 0.5).tolist()
      [[0.0, -0.5, 0.5, 0.0]]
    """
    batch = grad.shape[0]
    flat = jnp.abs(grad.reshape(batch, -1))
    size = flat.shape[1]
    share = jnp.broadcast_to(jnp.asarray(share, jnp.float32), (batch,))
    index = jnp.clip(jnp.floor((1.0 - share) * size + 1e-4), 0, size - 1).astype(jnp.int32)
    threshold = jnp.take_along_axis(jnp.sort(flat, axis=-1), index[:, None], axis=-1)
    mask = (flat >= threshold) & (flat > 0)
    count = jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1).astype(grad.dtype)
    step = jnp.where(mask, jnp.sign(grad.reshape(batch, -1)), 0.0) / count
    return step.reshape(grad.shape)


def l1_sparse(sparsity: float = 0.05) -> ThreatModel:
    """The L1 ball with sparse steps and the exact projection onto the ball ∩ box.

    Steps take the sign of the top ``sparsity`` share of gradient coordinates,
    scaled to unit L1 norm (the step of Croce & Hein 2021, "Mind the box:
    l1-APGD", arXiv:2103.01208, with a fixed sparsity instead of their adaptive
    one). Every ``l1_sparse(s)`` is the same ball as :data:`l1` (equal threat
    models); APGD runs its own adaptive-sparsity step on it.

    Args:
      sparsity: the share of coordinates a step moves, in ``(0, 1]``.

    Returns:
      The threat model (``name="l1"``).

    Raises:
      ValueError: ``sparsity`` outside ``(0, 1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l1, l1_sparse
      >>> d = l1.project(jnp.array([[3.0, -1.0, 0.5]]), 1.0)
      >>> float(jnp.abs(d).sum())
      1.0
      >>> step = l1_sparse(0.5).direction(jnp.array([[0.1, -3.0, 2.0, 0.0]]))
      >>> step.tolist(), l1_sparse(0.5) == l1
      ([[0.0, -0.5, 0.5, 0.0]], True)
    """
    if not 0.0 < sparsity <= 1.0:
        raise ValueError(f"sparsity must be in (0, 1], got {sparsity}.")

    def direction(grad):
        size = 1
        for dim in grad.shape[1:]:
            size *= dim
        k = max(1, int(round(sparsity * size)))
        mask = _top_k_mask(jnp.abs(grad), k) & (grad != 0)
        step = jnp.sign(grad) * mask
        total = jnp.sum(jnp.abs(step).reshape(grad.shape[0], -1), -1)
        return step / per_example_value(jnp.maximum(total, 1.0), grad)

    def random_init(key, shape, eps):
        direction_key, radius_key = jax.random.split(key)
        laplace = jax.random.laplace(direction_key, shape)
        dims = 1
        for size in shape[1:]:
            dims *= size
        unit = laplace / per_example_value(jnp.maximum(_flat_norm(laplace, 1), _TINY), laplace)
        radius = jax.random.uniform(radius_key, (shape[0],)) ** (1.0 / dims)
        return unit * per_example_value(radius, unit) * per_example_value(eps, unit)

    return ThreatModel(
        name="l1",
        norm=_l1_norm,
        project=_l1_project,
        direction=direction,
        random_init=random_init,
        box_project=_l1_box_project,
        dual_norm=_linf_norm,
    )


l1 = l1_sparse()
"""The L1 ball: sparse sign steps (top 5% of coordinates), exact projection onto ball ∩ box."""


def _l0_project(delta, eps):
    # Keeps the round(eps) largest-magnitude coordinates (eps is a count of coordinates).
    batch = delta.shape[0]
    flat = jnp.abs(delta.reshape(batch, -1))
    count = jnp.broadcast_to(jnp.round(jnp.asarray(eps)), (batch,)).astype(jnp.int32)
    ranks = jnp.argsort(jnp.argsort(-flat, axis=-1), axis=-1)
    keep = ranks < count[:, None]
    return jnp.where(keep, delta.reshape(batch, -1), 0.0).reshape(delta.shape)


def _l0_direction(grad):
    return jnp.sign(grad) * _top_k_mask(jnp.abs(grad), 1)


def _l0_init(key, shape, eps):
    values = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return _l0_project(values, eps)


def _l0_norm(delta):
    return jnp.sum(delta.reshape(delta.shape[0], -1) != 0, axis=-1).astype(delta.dtype)


l0 = ThreatModel(
    name="l0",
    norm=_l0_norm,
    project=_l0_project,
    direction=_l0_direction,
    random_init=_l0_init,
)
"""The L0 "ball": at most ``eps`` coordinates changed (``eps`` is a count)."""

#: The built-in threat models by name; error messages list these names.
THREAT_MODELS: dict[str, ThreatModel] = {"linf": linf, "l2": l2, "l1": l1, "l0": l0}
_ALIASES = {"inf": "linf", "2": "l2", "1": "l1", "0": "l0"}


def get_threat_model(norm: str | ThreatModel) -> ThreatModel:
    """Resolves a norm name (or a :class:`ThreatModel`, returned as is) to a threat model.

    Args:
      norm: ``"linf"``, ``"l2"``, ``"l1"``, ``"l0"`` (also ``"inf"``, ``"2"``,
        ``"1"``, ``"0"``; any case), or a :class:`ThreatModel`.

    Returns:
      The threat model.

    Raises:
      ValueError: for an unknown name; the message lists the registered ones.

    Example:
      >>> from advjax.attacks import get_threat_model, linf
      >>> get_threat_model("linf").name, get_threat_model("INF") is linf
      ('linf', True)
    """
    if isinstance(norm, ThreatModel):
        return norm
    key = str(norm).lower()
    key = _ALIASES.get(key, key)
    if key in THREAT_MODELS:
        return THREAT_MODELS[key]
    raise ValueError(
        f"unknown norm {norm!r}; choose one of {list(THREAT_MODELS)} or pass a ThreatModel."
    )


def per_norm(table: Mapping[ThreatModel, T], threat: ThreatModel, attack: str) -> T:
    """The entry of a per-norm ``table`` for ``threat``, or a clear error at build time.

    Attacks whose algorithm differs per norm (Square's update, FAB's and
    DeepFool's steps) keep ``{threat_model: step}`` tables; the lookup uses
    threat-model equality (same ball; see :class:`ThreatModel`), never names.

    Args:
      table: ``{ThreatModel: entry}``.
      threat: the threat model the attack was built for.
      attack: the attack's name, for the message.

    Returns:
      ``table[threat]``.

    Raises:
      ValueError: ``threat`` has no entry; the message lists the supported ones.

    Example:
      >>> from advjax.attacks import l1, l2, linf
      >>> from advjax.attacks._threat import per_norm
      >>> per_norm({linf: "sign", l2: "normalised"}, l2, "demo")
      'normalised'
      >>> per_norm({linf: "sign"}, l1, "demo")
      Traceback (most recent call last):
      ...
      ValueError: demo has no update for threat model 'l1'; supported: ['linf']; ...
    """
    entry = table.get(threat)
    if entry is None:
        supported = [known.name for known in table]
        raise ValueError(
            f"{attack} has no update for threat model {threat.name!r}; supported: "
            f"{supported}; PGD, APGD, FGSM, BIM and MI-FGSM accept any ThreatModel."
        )
    return entry
