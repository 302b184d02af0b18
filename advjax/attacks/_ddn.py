"""Decoupled Direction and Norm (Rony et al. 2019): a fast minimum-L2 attack."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select, is_successful
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._minnorm import within_budget
from advjax.attacks._threat import l2
from advjax.losses import ce


def ddn(
    eps=None,
    *,
    steps: int = 100,
    init_norm: float = 1.0,
    gamma: float = 0.05,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds DDN, a minimum-L2 attack that decouples direction and norm.

    Rony et al. (2019), "Decoupling Direction and Norm for Efficient
    Gradient-Based L2 Adversarial Attacks and Defenses", arXiv:1811.09600.

    Each step takes a normalised cross-entropy gradient step of size ``alpha``
    (cosine-annealed from 1 to 0.01), then sets the perturbation's norm to
    ``eps_k``, which shrinks by ``1 - gamma`` while the point is adversarial and
    grows by ``1 + gamma`` otherwise. Each example keeps its smallest successful
    perturbation; failures return the input. Paper defaults: 100 steps,
    ``eps_0 = 1``, ``gamma = 0.05``.

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the L2 ball.
      steps: iterations.
      init_norm: the starting norm ``eps_0``.
      gamma: the norm's multiplicative update.
      targeted: ``y`` holds targets.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

    Raises:
      ValueError: a bad budget or ``steps``, ``init_norm <= 0``, ``gamma``
        outside ``(0, 1)``, or an empty range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.ddn(steps=20)(logits_fn, jnp.full((1, 2), 0.55),
      ...                                     jnp.array([0]), key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv)))
      1
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    check_range(clip_min, clip_max)
    if init_norm <= 0 or not 0 < gamma < 1:
        raise ValueError(f"need init_norm > 0 and 0 < gamma < 1, got {init_norm}, {gamma}.")

    def attack(logits_fn, x, y, *, key):
        del key
        batch = x.shape[0]
        shape1 = (batch,) + (1,) * (x.ndim - 1)
        sign = -1.0 if targeted else 1.0

        def objective(delta):
            logits = logits_fn(x + delta)
            return jnp.sum(sign * ce(logits, y)), logits

        grad_fn = jax.grad(objective, has_aux=True)

        def body(i, state):
            delta, norm_k, best_norm, best_delta = state
            grad, logits = grad_fn(delta)
            grad = finite_gradient(grad)
            adv = is_successful(logits, y, targeted)
            n = l2.norm(delta)
            better = adv & (n < best_norm)
            best_delta = _select(better, delta, best_delta)
            best_norm = jnp.where(better, n, best_norm)
            alpha = 0.01 + (1 - 0.01) * (1 + jnp.cos(math.pi * i / steps)) / 2
            delta = delta + alpha * l2.direction(grad)
            norm_k = jnp.where(adv, (1 - gamma) * norm_k, (1 + gamma) * norm_k)
            delta = (
                l2.direction(delta) * norm_k.reshape(shape1) * (l2.norm(delta) > 0).reshape(shape1)
            )
            delta = jnp.clip(x + delta, clip_min, clip_max) - x
            return delta, norm_k, best_norm, best_delta

        init = (
            jnp.zeros_like(x),
            jnp.full((batch,), init_norm),
            jnp.full((batch,), jnp.inf),
            jnp.zeros_like(x),
        )
        delta, _, best_norm, best_delta = jax.lax.fori_loop(0, steps, body, init)
        last_adv = is_successful(logits_fn(x + delta), y, targeted) & (l2.norm(delta) < best_norm)
        best_delta = _select(last_adv, delta, best_delta)
        x_adv = jnp.clip(x + best_delta, clip_min, clip_max)
        return jax.lax.stop_gradient(within_budget(l2, x, x_adv, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="ddn",
        eps=eps,
        norm="l2",
        clip_min=clip_min,
        clip_max=clip_max,
    )
