"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016): minimal L2 / Linf perturbations."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range
from advjax.attacks._core import Attack, _select
from advjax.attacks._guard import guarded
from advjax.attacks._minnorm import class_jacobian, shrink_along_segment, within_budget
from advjax.attacks._threat import get_threat_model
from advjax.losses import as_labels


def deepfool(
    eps=None,
    *,
    norm: str = "l2",
    steps: int = 50,
    overshoot: float = 0.02,
    num_classes: int | None = None,
    refine_steps: int = 0,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds DeepFool, a minimum-norm attack by iterated linearisation (L2 or Linf).

    Moosavi-Dezfooli, Fawzi & Frossard (2016), "DeepFool: a simple and accurate
    method to fool deep neural networks".

    Each step linearises the logit differences ``f_k - f_y`` and moves to the
    nearest linearised boundary: ``r = (|f_k| + 1e-4) / ||w_k||_q^q * |w_k|^(q-1) sign(w_k)``
    with ``q`` the dual norm (2 for L2, 1 for Linf). The total perturbation is
    scaled by ``1 + overshoot``. Paper defaults: 50 steps, overshoot 0.02, all
    classes as candidates (``num_classes``: only the top ones by clean logits).
    The loop is a ``lax.while_loop`` with a per-example done mask. DeepFool's
    last linearised step usually crosses the boundary by more than needed;
    ``refine_steps > 0`` (not in the paper) bisects back along the segment from
    ``x`` to the result to the closest point still misclassified.

    Args:
      eps: ``None`` for the minimum-norm attack; a budget projects the result into
        the ball (for fixed-budget evaluation).
      norm: ``"l2"`` or ``"linf"``.
      steps: maximum iterations.
      overshoot: the overshoot factor.
      num_classes: candidate classes (``None``: all).
      refine_steps: bisection steps of the final line search (0: the paper's attack).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1) - 1.0, 1.0 - x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.deepfool()(logits_fn, jnp.full((1, 2), 0.55), jnp.array([0]),
      ...                                   key=jax.random.key(0))
      >>> int(jnp.argmax(logits_fn(x_adv)))
      1
    """
    if eps is not None:
        check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    if threat.name not in ("l2", "linf"):
        raise ValueError(f"deepfool supports norm 'l2' or 'linf', got {norm!r}.")
    if overshoot < 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot}.")
    refine_steps = check_positive_int(refine_steps, "refine_steps", minimum=0)

    def attack(logits_fn, x, y, *, key):
        del key
        labels = as_labels(y)
        batch = x.shape[0]
        expand = (batch,) + (1,) * (x.ndim - 1)
        clean_logits = logits_fn(x)
        classes = clean_logits.shape[-1]
        candidates = classes if num_classes is None else min(num_classes, classes)

        def step(state):
            i, r_total, done = state
            x_adv = jnp.clip(x + (1 + overshoot) * r_total, clip_min, clip_max)
            logits, jac = class_jacobian(logits_fn, x_adv)  # jac [K, B, ...]
            done = done | (jnp.argmax(logits, -1) != labels)
            jac = jnp.moveaxis(jac, 0, 1).reshape(batch, classes, -1)
            own_grad = jnp.take_along_axis(jac, labels[:, None, None], 1)
            own_logit = jnp.take_along_axis(logits, labels[:, None], 1)
            w = jac - own_grad  # [B, K, D]
            f = logits - own_logit  # [B, K]
            dual = jnp.sum(jnp.abs(w), -1) if threat.name == "linf" else jnp.linalg.norm(w, axis=-1)
            distance = jnp.abs(f) / jnp.maximum(dual, 1e-12)
            excluded = jax.nn.one_hot(labels, classes, dtype=bool)
            if candidates < classes:
                rank = jnp.argsort(jnp.argsort(-clean_logits, -1), -1)
                excluded = excluded | (rank >= candidates)
            best = jnp.argmin(jnp.where(excluded, jnp.inf, distance), -1)
            w_best = jnp.take_along_axis(w, best[:, None, None], 1)[:, 0]
            f_best = jnp.take_along_axis(f, best[:, None], 1)[:, 0]
            dual_best = jnp.take_along_axis(dual, best[:, None], 1)[:, 0]
            if threat.name == "linf":
                r = (jnp.abs(f_best) + 1e-4)[:, None] / jnp.maximum(dual_best, 1e-12)[:, None]
                r = r * jnp.sign(w_best)
            else:
                r = (jnp.abs(f_best) + 1e-4)[:, None] / jnp.maximum(dual_best**2, 1e-12)[:, None]
                r = r * w_best
            r_total = r_total + jnp.where(done[:, None], 0.0, r).reshape(x.shape)
            return i + 1, r_total, done

        def cond(state):
            i, _, done = state
            return (i < steps) & ~jnp.all(done)

        done0 = jnp.argmax(clean_logits, -1) != labels
        _, r_total, _ = jax.lax.while_loop(cond, step, (0, jnp.zeros_like(x), done0))
        x_adv = jnp.clip(x + (1 + overshoot) * r_total, clip_min, clip_max)
        if refine_steps:
            x_adv = shrink_along_segment(logits_fn, x, x_adv, labels, refine_steps)
        x_adv = _select(done0, x, x_adv)
        del expand
        return jax.lax.stop_gradient(within_budget(threat, x, x_adv, eps, clip_min, clip_max))

    return guarded(
        attack,
        name="deepfool",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
    )
