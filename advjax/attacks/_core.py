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
Attack = Callable[..., jax.Array]


def predicted_class(logits: jax.Array) -> jax.Array:
    """Per example the argmax class, or ``-1`` (no class, never correct) for unusable logits.

    Logits are unusable when one is NaN or the largest is infinite; ``-inf``
    entries (a log-probability of 0) are fine.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.attacks import predicted_class
      >>> predicted_class(jnp.array([[0.0, 2.0], [jnp.nan, 1.0], [-jnp.inf, 0.0]])).tolist()
      [1, -1, 1]
    """
    return jnp.where(usable_logits(logits), jnp.argmax(logits, axis=-1), -1)


def usable_logits(logits: jax.Array) -> jax.Array:
    """Per example: no NaN and a finite largest logit, so that the argmax means something."""
    no_nan = ~jnp.any(jnp.isnan(logits), axis=-1)
    return no_nan & jnp.isfinite(jnp.max(logits, axis=-1))


def is_successful(logits: jax.Array, y: jax.Array, targeted: bool) -> jax.Array:
    """Per example: misclassified (untargeted) or classified as the target (targeted).

    Unusable logits (see :func:`usable_logits`) never count as a success.
    """
    predicted = jnp.argmax(logits, axis=-1)
    labels = as_labels(y)
    return usable_logits(logits) & (predicted == labels if targeted else predicted != labels)


def is_better(success, loss, best_success, best_loss) -> jax.Array:
    """Lexicographic order used to keep the strongest candidate: success, then loss."""
    return (success & ~best_success) | ((success == best_success) & (loss > best_loss))


def _select(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - mask.ndim)), new, old)


def project_to_threat(threat: ThreatModel, x, candidate, eps, clip_min, clip_max) -> jax.Array:
    """Moves ``candidate`` into the ``eps``-ball around ``x`` and the valid range."""
    if threat.box_project is None:
        delta = threat.project(candidate - x, eps)
    else:
        delta = threat.box_project(candidate - x, eps, clip_min - x, clip_max - x)
    return jnp.clip(x + delta, clip_min, clip_max)


def attack_objective(logits_fn: LogitsFn, loss: Loss, y: jax.Array, targeted: bool):
    """Returns ``x -> (sum of losses, (per-example loss, logits))`` that the attacker ascends.

    A targeted attack descends the loss towards ``y``, so its objective is the
    negated loss.
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

    Returns:
      ``x_adv`` with ``threat.norm(x_adv - x) <= eps`` and values in
      ``[clip_min, clip_max]``, gradients stopped.
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
