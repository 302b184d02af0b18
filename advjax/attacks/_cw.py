"""The Carlini & Wagner L2 attack (2017) with its binary search over the constant c."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._minnorm import within_budget
from advjax.attacks._threat import l2
from advjax.losses import as_labels, cw_margin


def cw_l2(
    eps=None,
    *,
    steps: int = 1000,
    binary_search_steps: int = 9,
    learning_rate: float = 1e-2,
    initial_const: float = 1e-3,
    confidence: float = 0.0,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the C&W L2 attack with its binary search over the constant ``c``.

    Carlini & Wagner (2017), "Towards Evaluating the Robustness of Neural Networks",
    arXiv:1608.04644.

    Minimises ``||x' - x||_2^2 + c * max(z_y - max_{j != y} z_j + kappa, 0)`` over
    ``x' = lo + (hi - lo)(tanh(w) + 1) / 2`` with Adam, and binary-searches ``c``
    per example (x10 until the first success, then bisection). Each example keeps
    its smallest successful perturbation; failures return the input. Paper
    defaults: 9 binary-search steps, learning rate 0.01, initial ``c = 1e-3``,
    ``kappa = 0``; the paper's 10,000 Adam steps are cut to 1,000 by default
    (with its abort-early rule they rarely run longer).

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the L2 ball.
      steps: Adam steps per binary-search step.
      binary_search_steps: rounds of the search over ``c``.
      learning_rate: Adam's step size.
      initial_const: the first ``c``.
      confidence: the margin ``kappa``.
      targeted: ``y`` holds targets.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

    Raises:
      ValueError: a bad budget or count, ``learning_rate`` or ``initial_const`` not
        positive, a negative ``confidence``, or an empty range.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.cw_l2(steps=50, binary_search_steps=3)(
      ...     logits_fn, jnp.full((1, 2), 0.55), jnp.array([0]), key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv)))
      1
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    binary_search_steps = check_positive_int(binary_search_steps, "binary_search_steps")
    check_range(clip_min, clip_max)
    if learning_rate <= 0 or initial_const <= 0 or confidence < 0:
        raise ValueError("need learning_rate > 0, initial_const > 0 and confidence >= 0.")

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]
        span = clip_max - clip_min

        def to_x(w):
            return clip_min + span * (jnp.tanh(w) + 1) / 2

        w0 = jnp.arctanh(jnp.clip((x - clip_min) / span * 2 - 1, -1 + 1e-6, 1 - 1e-6))

        def margin_term(logits):
            m = cw_margin(logits, labels)  # max_other - z_y
            return jnp.maximum((m if targeted else -m) + confidence, 0.0)

        def success_of(logits):
            pred = jnp.argmax(logits, -1)
            # With kappa > 0 success needs the margin itself, as in the paper.
            m = cw_margin(logits, labels)
            ok = (-m >= confidence) if targeted else (m >= confidence)
            return ok & ((pred == labels) if targeted else (pred != labels))

        def objective(w, const):
            x_adv = to_x(w)
            logits = logits_fn(x_adv)
            dist = jnp.sum(((x_adv - x) ** 2).reshape(batch, -1), -1)
            return jnp.sum(dist + const * margin_term(logits)), (dist, logits, x_adv)

        grad_fn = jax.grad(objective, has_aux=True)

        def search_round(carry, _):
            const, lower, upper, best_dist, best_x = carry

            def adam_step(i, state):
                w, m, v, best_dist, best_x, ever = state
                grad, (dist, logits, x_adv) = grad_fn(w, const)
                grad = finite_gradient(grad)
                ok = success_of(logits)
                better = ok & (dist < best_dist)
                best_x = _select(better, x_adv, best_x)
                best_dist = jnp.where(better, dist, best_dist)
                ever = ever | ok
                m = 0.9 * m + 0.1 * grad
                v = 0.999 * v + 0.001 * grad**2
                t = i + 1.0
                w = w - learning_rate * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8)
                return w, m, v, best_dist, best_x, ever

            init = (
                w0,
                jnp.zeros_like(x),
                jnp.zeros_like(x),
                best_dist,
                best_x,
                jnp.zeros(batch, bool),
            )
            _, _, _, best_dist, best_x, ever = jax.lax.fori_loop(0, steps, adam_step, init)
            upper = jnp.where(ever, jnp.minimum(upper, const), upper)
            lower = jnp.where(ever, lower, jnp.maximum(lower, const))
            bounded = upper < 1e9
            const = jnp.where(bounded, (lower + upper) / 2, const * 10)
            return (const, lower, upper, best_dist, best_x), None

        init = (
            jnp.full((batch,), initial_const),
            jnp.zeros(batch),
            jnp.full((batch,), 1e10),
            jnp.full((batch,), jnp.inf),
            x,
        )
        (_, _, _, _, best_x), _ = jax.lax.scan(search_round, init, None, length=binary_search_steps)
        return jax.lax.stop_gradient(within_budget(l2, x, best_x, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="cw_l2",
        eps=eps,
        norm="l2",
        clip_min=clip_min,
        clip_max=clip_max,
    )
