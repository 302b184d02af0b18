"""The compiled projected-gradient loop shared by FGSM, BIM and PGD.

One function, ``projected_gradient_ascent``, runs ``steps`` iterations of
``x <- clip(x + Proj(x + step * direction(grad)))`` inside ``lax.fori_loop``,
optionally keeping, per example, the strongest iterate seen (a successful one
first, then the highest loss). Factories in ``_pgd.py`` and ``_fgsm.py`` only
choose its hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax.attacks._guard import finite_gradient
from advjax.attacks._threat import ThreatModel, per_example_value
from advjax.losses import Loss, as_labels

LogitsFn = Callable[[jax.Array], jax.Array]
"""A classifier as attacks see it: inputs ``x[B, ...]`` to logits ``[B, K]``."""
Attack = Callable[..., jax.Array]
"""What the attack factories return: ``attack(logits_fn, x, y, *, key) -> x_adv``."""


def predicted_class(logits: jax.Array) -> jax.Array:
    """Per example the argmax class, or ``-1`` (no class, never correct) for unusable logits.

    Logits are unusable when one is NaN or the largest is infinite; ``-inf``
    entries (a log-probability of 0) are fine.

    Args:
      logits: ``[B, K]``.

    Returns:
      ``[B]`` int classes, ``-1`` where unusable.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import predicted_class
      >>> predicted_class(jnp.array([[0.0, 2.0], [jnp.nan, 1.0], [-jnp.inf, 0.0]])).tolist()
      [1, -1, 1]
    """
    return jnp.where(usable_logits(logits), jnp.argmax(logits, axis=-1), -1)


def usable_logits(logits: jax.Array) -> jax.Array:
    """Per example: no NaN and a finite largest logit, so that the argmax means something.

    Args:
      logits: ``[B, K]``.

    Returns:
      ``[B]`` bool.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._core import usable_logits
      >>> usable_logits(jnp.array([[0.0, 1.0], [jnp.inf, 0.0], [-jnp.inf, 0.0]])).tolist()
      [True, False, True]
    """
    no_nan = ~jnp.any(jnp.isnan(logits), axis=-1)
    return no_nan & jnp.isfinite(jnp.max(logits, axis=-1))


def is_successful(logits: jax.Array, y: jax.Array, targeted: bool) -> jax.Array:
    """Per example: misclassified (untargeted) or classified as the target (targeted).

    Unusable logits (see :func:`usable_logits`) never count as a success.

    Args:
      logits: ``[B, K]``.
      y: ``[B]`` int labels (targets when ``targeted``) or ``[B, K]`` rows.
      targeted: whether ``y`` holds targets.

    Returns:
      ``[B]`` bool.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import is_successful
      >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [jnp.nan, 0.0]])
      >>> is_successful(logits, jnp.array([0, 0, 0]), targeted=False).tolist()
      [False, True, False]
    """
    predicted = jnp.argmax(logits, axis=-1)
    labels = as_labels(y)
    return usable_logits(logits) & (predicted == labels if targeted else predicted != labels)


def is_better(success, loss, best_success, best_loss) -> jax.Array:
    """Lexicographic order used to keep the strongest candidate: success, then loss.

    Args:
      success: ``[B]`` the candidate's success.
      loss: ``[B]`` the candidate's loss.
      best_success: ``[B]`` the incumbent's success.
      best_loss: ``[B]`` the incumbent's loss.

    Returns:
      ``[B]`` bool: the candidate is strictly better.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import is_better
      >>> is_better(jnp.array([True, False, False]), jnp.array([0.0, 2.0, 2.0]),
      ...           jnp.array([False, False, True]), jnp.array([5.0, 1.0, 0.0])).tolist()
      [True, True, False]
    """
    return (success & ~best_success) | ((success == best_success) & (loss > best_loss))


def _select(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - mask.ndim)), new, old)


def project_to_threat(threat: ThreatModel, x, candidate, eps, clip_min, clip_max) -> jax.Array:
    """Moves ``candidate`` into the ``eps``-ball around ``x`` and the valid range.

    Uses the threat model's projection onto the ball ∩ box
    (:attr:`ThreatModel.box_project`), then clips to the range for rounding.

    Args:
      threat: the threat model.
      x: ``[B, ...]`` the clean inputs (the centres of the balls).
      candidate: ``[B, ...]`` the points to move.
      eps: the budget, a scalar or ``[B]``, in ``threat.norm``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``[B, ...]`` with ``threat.norm(result - x) <= eps`` and values in the range.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import l2, project_to_threat
      >>> x = jnp.array([[0.5, 0.5]])
      >>> out = project_to_threat(l2, x, jnp.array([[3.5, 4.5]]), 0.5, 0.0, 1.0)
      >>> [round(v, 4) for v in out[0].tolist()]
      [0.8, 0.9]
    """
    if threat.box_by_clipping:  # the final clip to the range is the box part: no box arrays
        delta = threat.project(candidate - x, eps)
    else:
        delta = threat.box_project(candidate - x, eps, clip_min - x, clip_max - x)
    return jnp.clip(x + delta, clip_min, clip_max)


def attack_objective(logits_fn: LogitsFn, loss: Loss, y: jax.Array, targeted: bool):
    """Returns ``x -> (sum of losses, (per-example loss, logits))`` that the attacker ascends.

    A targeted attack descends the loss towards ``y``, so its objective is the
    negated loss.

    Args:
      logits_fn: ``x[B, ...] -> logits[B, K]``.
      loss: per-example ``(logits, y) -> [B]``.
      y: labels (targets when ``targeted``).
      targeted: whether to negate the loss.

    Returns:
      ``x -> (scalar, ([B], [B, K]))``, ready for ``jax.grad(..., has_aux=True)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks._core import attack_objective
      >>> from advjax.losses import ce
      >>> objective = attack_objective(lambda x: x, ce, jnp.array([0]), targeted=True)
      >>> total, (per_example, logits) = objective(jnp.array([[0.0, 0.0]]))
      >>> round(float(total), 4)  # minus the CE of a coin flip
      -0.6931
    """
    sign = -1.0 if targeted else 1.0

    def objective(x_adv):
        logits = logits_fn(x_adv)
        per_example = sign * loss(logits, y)
        return jnp.sum(per_example), (per_example, logits)

    return objective


def projected_gradient_ascent(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    eps,
    step_size,
    steps: int,
    threat: ThreatModel,
    loss: Loss,
    targeted: bool,
    random_start: bool,
    keep_best: bool,
    clip_min: float,
    clip_max: float,
) -> jax.Array:
    """Runs the projected-gradient loop; see the module docstring.

    Args:
      logits_fn: ``x[B, ...] -> logits[B, K]``.
      x: ``[B, ...]`` the clean inputs.
      y: ``[B]`` labels (targets when ``targeted``).
      key: the random start's key.
      eps: the budget in ``threat.norm``, a scalar or ``[B]``.
      step_size: scalar or ``[B]``, in ``threat.norm`` (a step is
        ``step_size * threat.direction(grad)``).
      steps: iterations.
      threat: any :class:`ThreatModel`.
      loss: per-example loss ``(logits, y) -> [B]``.
      targeted: descend the loss towards ``y`` instead.
      random_start: start from ``threat.random_init`` (else from ``x``).
      keep_best: return the strongest iterate (success first, then loss), else the last.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``x_adv`` with ``threat.norm(x_adv - x) <= eps`` and values in
      ``[clip_min, clip_max]``, gradients stopped.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.attacks import linf, projected_gradient_ascent
      >>> from advjax.losses import ce
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x_adv = projected_gradient_ascent(
      ...     logits_fn, jnp.full((1, 2), 0.5), jnp.array([0]), jax.random.key(0), eps=0.1,
      ...     step_size=0.05, steps=3, threat=linf, loss=ce, targeted=False, random_start=False,
      ...     keep_best=False, clip_min=0.0, clip_max=1.0)
      >>> [round(v, 4) for v in x_adv[0].tolist()]
      [0.4, 0.4]
    """
    eps = jnp.asarray(eps, x.dtype)
    step_size = per_example_value(step_size, x)  # a scalar or one step per example
    objective_grad = jax.grad(attack_objective(logits_fn, loss, y, targeted), has_aux=True)

    def grad_fn(x_adv):
        grad, aux = objective_grad(x_adv)
        return finite_gradient(grad), aux

    def clip_to_threat(candidate):
        return project_to_threat(threat, x, candidate, eps, clip_min, clip_max)

    delta0 = threat.random_init(key, x.shape, eps) if random_start else jnp.zeros_like(x)
    x_start = clip_to_threat(x + delta0)

    def ascend(x_adv, grad):
        return clip_to_threat(x_adv + step_size * threat.direction(grad))

    if not keep_best:

        def plain_step(_, x_adv):
            grad, _aux = grad_fn(x_adv)
            return ascend(x_adv, grad)

        return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, plain_step, x_start))

    batch = x.shape[0]
    best = (x_start, jnp.zeros(batch, bool), jnp.full(batch, -jnp.inf, jnp.float32))

    def keep(best, candidate, per_example, logits):
        best_x, best_success, best_loss = best
        success = is_successful(logits, y, targeted)
        per_example = jnp.nan_to_num(per_example.astype(jnp.float32), nan=-jnp.inf)
        better = is_better(success, per_example, best_success, best_loss)
        return (
            _select(better, candidate, best_x),
            jnp.where(better, success, best_success),
            jnp.where(better, per_example, best_loss),
        )

    def tracked_step(_, carry):
        x_adv, best = carry
        grad, (per_example, logits) = grad_fn(x_adv)
        return ascend(x_adv, grad), keep(best, x_adv, per_example, logits)

    x_last, best = jax.lax.fori_loop(0, steps, tracked_step, (x_start, best))
    _, (per_example, logits) = attack_objective(logits_fn, loss, y, targeted)(x_last)
    best_x, _, _ = keep(best, x_last, per_example, logits)
    return jax.lax.stop_gradient(best_x)
