"""Universal adversarial perturbations: one perturbation for a whole data set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import (
    InvalidInputError,
    as_targets,
    check_batch,
    check_epsilon,
    check_inputs,
    check_positive_int,
    check_range,
    is_concrete,
)
from advjax.attacks._core import Attack
from advjax.attacks._guard import finite_gradient
from advjax.attacks._threat import ThreatModel, get_threat_model
from advjax.losses import Loss, get_loss


def universal_perturbation(
    logits_fn,
    x,
    y,
    *,
    eps,
    key: jax.Array,
    norm: str | ThreatModel = "linf",
    epochs: int = 5,
    batch_size: int = 128,
    step_size=None,
    loss: str | Loss = "ce",
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> jax.Array:
    """Computes one perturbation ``v`` (``||v|| <= eps``) that fools a model on a data set.

    Moosavi-Dezfooli et al. (2017), "Universal adversarial perturbations"
    (arXiv:1610.08401), with the stochastic-gradient solver of Shafahi et al.
    (2020), "Universal Adversarial Training" (arXiv:1812.03705): for ``epochs``
    passes over shuffled mini-batches, ascend the mean (clamped) loss of
    ``clip(x + v)`` along the threat model's steepest direction and project
    ``v`` back into the ball. All epochs and batches run in one compiled
    ``lax.scan``. (The original per-image DeepFool aggregation is sequential
    over points and not used.)

    Args:
      logits_fn: the eval-mode model.
      x: inputs ``[N, ...]``; ``N`` is truncated to a multiple of ``batch_size``.
      y: labels ``[N]``.
      eps: the budget of ``v``.
      key: PRNG key for the shuffling.
      norm: ``"linf"``, ``"l2"`` or ``"l1"``.
      epochs: passes over the data.
      batch_size: examples per step.
      step_size: step length (``None``: ``eps / 10``).
      loss: the loss to ascend.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``v`` with shape ``x.shape[1:]``.

    Raises:
      ValueError, InvalidInputError: a bad budget, count or range, bad inputs or
        labels, an unknown norm or loss.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x, y = jnp.full((8, 3), 0.5), jnp.zeros(8, jnp.int32)
      >>> v = advjax.attacks.universal_perturbation(logits_fn, x, y, eps=0.1,
      ...                                          key=jax.random.key(0), batch_size=4)
      >>> v.round(3)
      Array([-0.1, -0.1, -0.1], dtype=float32)
    """
    check_batch(logits_fn, jnp.asarray(x), jnp.asarray(y), clip_min, clip_max)
    check_epsilon(eps)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = min(check_positive_int(batch_size, "batch_size"), x.shape[0])
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    loss_fn = get_loss(loss)
    step_size = eps / 10 if step_size is None else step_size
    x, y = jnp.asarray(x).astype(jnp.float32), as_targets(y)
    batches = x.shape[0] // batch_size

    def batch_loss(v, xb, yb):
        logits = logits_fn(jnp.clip(xb + v[None], clip_min, clip_max))
        # Clamp so already-fooled points do not dominate (Shafahi et al. 2020).
        return jnp.mean(jnp.minimum(loss_fn(logits, yb), 10.0))

    grad_fn = jax.grad(batch_loss)

    def epoch(v, epoch_key):
        order = jax.random.permutation(epoch_key, x.shape[0])[: batches * batch_size]
        order = order.reshape(batches, batch_size)

        def step(v, idx):
            grad = grad_fn(v, x[idx], y[idx])
            grad = finite_gradient(grad[None])[0]  # no step on a NaN/inf gradient
            v = v + step_size * threat.direction(grad[None])[0]
            return threat.project(v[None], eps)[0], None

        v, _ = jax.lax.scan(step, v, order)
        return v, None

    v0 = jnp.zeros(x.shape[1:], x.dtype)
    v, _ = jax.lax.scan(epoch, v0, jax.random.split(key, epochs))
    return jax.lax.stop_gradient(v)


def apply_universal(v, *, clip_min: float = 0.0, clip_max: float = 1.0) -> Attack:
    """The attack that adds a fixed universal perturbation ``v`` to every input.

    Args:
      v: the perturbation, shaped like one input (from :func:`universal_perturbation`).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> clip(x + v)`` (model, labels and key unused).

    Raises:
      ValueError, InvalidInputError: an empty range or a non-finite ``v``; when
        called, inputs out of range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> attack = advjax.attacks.apply_universal(jnp.full((2,), 0.1))
      >>> attack(None, jnp.full((1, 2), 0.95), jnp.array([0]), key=jax.random.key(0)).tolist()
      [[1.0, 1.0]]
    """
    check_range(clip_min, clip_max)
    if is_concrete(v) and not np.all(np.isfinite(np.asarray(v))):
        raise InvalidInputError("the universal perturbation v contains NaN or inf values.")

    def attack(logits_fn, x, y, *, key):
        del logits_fn, key
        check_inputs(x, y, clip_min, clip_max)
        return jnp.clip(x + v[None], clip_min, clip_max)

    return attack
