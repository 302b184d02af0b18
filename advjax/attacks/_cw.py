"""The Carlini & Wagner L2 attack (2017) with its binary search over the constant c."""

from __future__ import annotations

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
from advjax.attacks._threat import l2
from advjax.losses import as_labels


def cw_l2(
    eps=None,
    *,
    steps: int = 10000,
    binary_search_steps: int = 9,
    learning_rate: float = 1e-2,
    initial_const: float = 1e-3,
    confidence: float = 0.0,
    abort_early: bool = True,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the C&W L2 attack with its binary search over the constant ``c``.

    Carlini & Wagner (2017), "Towards Evaluating the Robustness of Neural Networks",
    arXiv:1608.04644.

    Minimises ``||x' - x||_2^2 + c * max(z_y - max_{j != y} z_j + kappa, 0)`` over
    ``x' = lo + (hi - lo)(tanh(w) + 1) / 2`` with Adam, and binary-searches ``c``
    per example (x10 until the first success, then bisection); every round
    starts again from ``x``. Each example keeps its smallest successful
    perturbation; failures return the input. Abort early, as in the authors'
    code: every ``steps // 10`` steps an example whose loss fell by less than
    0.01% stops (per example here; the loop ends when all have stopped).
    Defaults are the authors' code's: 10,000 Adam steps, 9 binary-search steps,
    learning rate 0.01, initial ``c = 1e-3``, ``kappa = 0``. Checked against
    Foolbox's ``L2CarliniWagnerAttack`` (``experiments/benchmarks/attack_fidelity.py``).

    Args:
      eps: ``None`` for minimum norm; a budget projects the result into the L2 ball.
      steps: Adam steps per binary-search step.
      binary_search_steps: rounds of the search over ``c``.
      learning_rate: Adam's step size.
      initial_const: the first ``c``.
      confidence: the margin ``kappa``.
      abort_early: stop an example whose loss has stalled.
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
    check_every = max(steps // 10, 1)

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]
        span = clip_max - clip_min

        def to_x(w):
            return clip_min + span * (jnp.tanh(w) + 1) / 2

        w0 = jnp.arctanh(jnp.clip((x - clip_min) / span * 2 - 1, -1 + 1e-6, 1 - 1e-6))

        def margin_term(logits):
            return margin_hinge(logits, labels, confidence, targeted)

        def success_of(logits):
            return margin_success(logits, labels, confidence, targeted)

        def objective(w, const):
            x_adv = to_x(w)
            logits = logits_fn(x_adv)
            dist = jnp.sum(((x_adv - x) ** 2).reshape(batch, -1), -1)
            loss = dist + const * margin_term(logits)
            return jnp.sum(loss), (loss, dist, logits, x_adv)

        grad_fn = jax.grad(objective, has_aux=True)

        def search_round(carry, _):
            const, lower, upper, best_dist, best_x = carry

            def adam_step(state):
                i, w, m, v, best_dist, best_x, ever, previous, stalled = state
                grad, (loss, dist, logits, x_adv) = grad_fn(w, const)
                grad = finite_gradient(grad)
                ok = success_of(logits) & ~stalled
                better = ok & (dist < best_dist)
                best_x = _select(better, x_adv, best_x)
                best_dist = jnp.where(better, dist, best_dist)
                ever = ever | ok
                check = abort_early & (i % check_every == 0)
                stalled_next, previous = abort_early_check(check, loss, previous, stalled)
                m_next = 0.9 * m + 0.1 * grad
                v_next = 0.999 * v + 0.001 * grad**2
                t = i + 1.0
                step = learning_rate * (m_next / (1 - 0.9**t))
                w_next = w - step / (jnp.sqrt(v_next / (1 - 0.999**t)) + 1e-8)
                w, m, v = (
                    _select(stalled, old, new)
                    for old, new in ((w, w_next), (m, m_next), (v, v_next))
                )
                return i + 1, w, m, v, best_dist, best_x, ever, previous, stalled_next

            def running(state):
                return (state[0] < steps) & ~jnp.all(state[-1])

            init = (
                jnp.asarray(0),
                w0,
                jnp.zeros_like(x),
                jnp.zeros_like(x),
                best_dist,
                best_x,
                jnp.zeros(batch, bool),
                jnp.full((batch,), jnp.inf),
                jnp.zeros(batch, bool),
            )
            end = jax.lax.while_loop(running, adam_step, init)
            best_dist, best_x, ever = end[4], end[5], end[6]
            const, lower, upper = bisect_constant(ever, const, lower, upper)
            return (const, lower, upper, best_dist, best_x), None

        start = constant_search_start(x, initial_const)
        (*_, best_x), _ = jax.lax.scan(search_round, start, None, length=binary_search_steps)
        return jax.lax.stop_gradient(within_budget(l2, x, best_x, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="cw_l2",
        eps=eps,
        norm="l2",
        clip_min=clip_min,
        clip_max=clip_max,
    )
