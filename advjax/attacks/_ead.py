"""EAD, the elastic-net attack (Chen et al. 2018): C&W's objective with an L1 term, by FISTA."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._minnorm import (
    abort_early_check,
    bisect_constant,
    constant_search_start,
    margin_hinge,
    margin_success,
    within_budget,
)
from advjax.attacks._threat import l1
from advjax.losses import as_labels

DECISION_RULES = ("en", "l1")


def shrinkage_threshold(z, x, beta, clip_min, clip_max):
    """EAD's projected shrinkage-thresholding ``S_beta``: soft-threshold ``z - x``, then the box.

    Coordinates that moved by at most ``beta`` return to ``x``; the others move
    ``beta`` back towards ``x`` and are clipped to ``[clip_min, clip_max]``.

    Args:
      z: ``[B, ...]`` the point after the gradient step.
      x: ``[B, ...]`` the clean inputs.
      beta: the L1 weight (threshold), in input units.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``[B, ...]`` inside the box.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._ead import shrinkage_threshold
      >>> z, x = jnp.array([[0.9, 0.52, 0.1]]), jnp.full((1, 3), 0.5)
      >>> [round(v, 3) for v in shrinkage_threshold(z, x, 0.05, 0, 1)[0].tolist()]
      [0.85, 0.5, 0.15]
    """
    diff = z - x
    up = jnp.minimum(z - beta, clip_max)
    down = jnp.maximum(z + beta, clip_min)
    return jnp.where(diff > beta, up, jnp.where(diff < -beta, down, x))


def elastic_net_distance(delta, beta, rule: str = "en"):
    """The decision rule's distance: ``||d||_2^2 + beta ||d||_1`` (``"en"``) or ``||d||_1``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._ead import elastic_net_distance
      >>> d = jnp.array([[0.3, -0.4]])
      >>> [round(float(elastic_net_distance(d, 0.1, r)[0]), 4) for r in ("en", "l1")]
      [0.32, 0.7]
    """
    flat = delta.reshape(delta.shape[0], -1)
    l1_norm = jnp.sum(jnp.abs(flat), -1)
    if rule == "l1":
        return l1_norm
    return jnp.sum(flat**2, -1) + beta * l1_norm


class EADState(NamedTuple):
    """One binary-search round's FISTA carry.

    Attributes:
      k: the iteration.
      x_k: ``[B, ...]`` the iterate (after shrinkage-thresholding).
      y_k: ``[B, ...]`` the extrapolated point the gradient is taken at.
      best_distance: ``[B]`` the decision rule's distance of the best success so far.
      best_x: ``[B, ...]`` that success (the input until one is found).
      succeeded: ``[B]`` whether this round found an adversarial point.
      previous_loss: ``[B]`` the loss at the last abort-early check.
      stalled: ``[B]`` examples whose loss stopped falling (they stop moving).

    Example:
      >>> from advjax.attacks._ead import EADState
      >>> EADState._fields[:3]
      ('k', 'x_k', 'y_k')
    """

    k: jax.Array
    x_k: jax.Array
    y_k: jax.Array
    best_distance: jax.Array
    best_x: jax.Array
    succeeded: jax.Array
    previous_loss: jax.Array
    stalled: jax.Array


def ead(
    eps=None,
    *,
    beta: float = 1e-3,
    steps: int = 1000,
    binary_search_steps: int = 9,
    learning_rate: float = 1e-2,
    initial_const: float = 1e-3,
    confidence: float = 0.0,
    decision_rule: str = "en",
    abort_early: bool = True,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds EAD, the elastic-net attack (Chen, Sharma, Zhang, Yi & Hsieh 2018).

    "EAD: Elastic-Net Attacks to Deep Neural Networks via Adversarial Examples",
    AAAI 2018, arXiv:1709.04114. Minimises
    ``c * f(x') + ||x' - x||_2^2 + beta ||x' - x||_1`` over the box, with ``f``
    C&W's margin hinge, by FISTA: a gradient step on the smooth part at the
    extrapolated point ``y_k`` with the step ``lr * sqrt(1 - k / steps)``, the
    projected shrinkage-thresholding :func:`shrinkage_threshold`, and the
    momentum ``y_{k+1} = x_{k+1} + k / (k + 3) (x_{k+1} - x_k)``. The constant
    ``c`` is binary-searched per example as in C&W (x10 until a success, then
    bisection); each round starts from ``x``. Among all successful iterates the
    decision rule keeps the smallest elastic-net distance (``"en"``) or L1
    distance (``"l1"``). Abort early, as in the authors' code: every
    ``steps // 10`` iterations an example whose loss fell by less than 0.01%
    stops moving; the loop ends when every example has stopped. Checked against
    Foolbox's ``EADAttack`` (``experiments/benchmarks/attack_fidelity.py``).

    Defaults are the paper's: ``beta = 1e-3``, 1,000 iterations, 9 binary-search
    steps, learning rate 0.01, initial ``c = 1e-3``, ``kappa = 0``, the EN rule.

    Args:
      eps: ``None`` for minimum norm; an L1 budget projects the result into the
        L1 ball (for evaluation at a fixed budget).
      beta: the L1 weight, in input units (also the shrinkage threshold).
      steps: FISTA iterations per binary-search step.
      binary_search_steps: rounds of the search over ``c``.
      learning_rate: the initial step of the gradient step (decays as ``sqrt``).
      initial_const: the first ``c``.
      confidence: the margin ``kappa`` a success needs.
      decision_rule: ``"en"`` or ``"l1"``.
      abort_early: stop an example whose loss has stalled.
      targeted: ``y`` holds targets.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused); examples
      never broken are returned unchanged.

    Raises:
      ValueError: a bad budget or count, a negative ``beta`` or ``confidence``,
        ``learning_rate`` or ``initial_const`` not positive, an unknown decision
        rule, or an empty range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.ead(steps=100, binary_search_steps=5)(
      ...     logits_fn, jnp.full((1, 2), 0.55), jnp.array([0]), key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv))), bool(jnp.abs(x_adv - 0.55).sum() < 0.2)
      (1, True)
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    binary_search_steps = check_positive_int(binary_search_steps, "binary_search_steps")
    check_range(clip_min, clip_max)
    if learning_rate <= 0 or initial_const <= 0 or confidence < 0 or beta < 0:
        raise ValueError(
            "need learning_rate > 0, initial_const > 0, confidence >= 0 and beta >= 0, got "
            f"{learning_rate}, {initial_const}, {confidence} and {beta}."
        )
    if decision_rule not in DECISION_RULES:
        raise ValueError(f"unknown decision_rule {decision_rule!r}; choose 'en' or 'l1'.")
    check_every = max(steps // 10, 1)

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]

        def smooth_loss(z, const):
            logits = logits_fn(z)
            dist = jnp.sum(((z - x) ** 2).reshape(batch, -1), -1)
            return jnp.sum(const * margin_hinge(logits, labels, confidence, targeted) + dist)

        smooth_grad = jax.grad(smooth_loss)

        def search_round(carry, _):
            const, lower, upper, best_distance, best_x = carry

            def fista_step(s: EADState) -> EADState:
                k = s.k.astype(jnp.float32)
                rate = learning_rate * jnp.sqrt(1.0 - k / steps)
                grad = finite_gradient(smooth_grad(s.y_k, const))
                x_next = shrinkage_threshold(s.y_k - rate * grad, x, beta, clip_min, clip_max)
                x_next = _select(s.stalled, s.x_k, x_next)
                momentum = k / (k + 3.0)
                y_next = _select(s.stalled, s.y_k, x_next + momentum * (x_next - s.x_k))
                logits = logits_fn(x_next)
                ok = margin_success(logits, labels, confidence, targeted) & ~s.stalled
                distance = elastic_net_distance(x_next - x, beta, decision_rule)
                better = ok & (distance < s.best_distance)
                hinge = margin_hinge(logits, labels, confidence, targeted)
                loss = const * hinge + elastic_net_distance(x_next - x, beta, "en")
                check = abort_early & (s.k % check_every == 0)
                stalled, previous = abort_early_check(check, loss, s.previous_loss, s.stalled)
                return EADState(
                    k=s.k + 1,
                    x_k=x_next,
                    y_k=y_next,
                    best_distance=jnp.where(better, distance, s.best_distance),
                    best_x=_select(better, x_next, s.best_x),
                    succeeded=s.succeeded | ok,
                    previous_loss=previous,
                    stalled=stalled,
                )

            def running(s: EADState):
                return (s.k < steps) & ~jnp.all(s.stalled)

            start = EADState(
                k=jnp.asarray(0),
                x_k=x,
                y_k=x,
                best_distance=best_distance,
                best_x=best_x,
                succeeded=jnp.zeros(batch, bool),
                previous_loss=jnp.full(batch, jnp.inf),
                stalled=jnp.zeros(batch, bool),
            )
            end = jax.lax.while_loop(running, fista_step, start)
            const, lower, upper = bisect_constant(end.succeeded, const, lower, upper)
            return (const, lower, upper, end.best_distance, end.best_x), None

        start = constant_search_start(x, initial_const)
        (*_, best_x), _ = jax.lax.scan(search_round, start, None, length=binary_search_steps)
        return jax.lax.stop_gradient(within_budget(l1, x, best_x, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="ead",
        eps=eps,
        norm="l1",
        clip_min=clip_min,
        clip_max=clip_max,
    )
