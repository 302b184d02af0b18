"""Iterative sign-gradient attacks: BIM / I-FGSM and the momentum MI-FGSM."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int, check_range, is_concrete
from advjax.attacks._core import (
    Attack,
    _select,
    attack_objective,
    is_better,
    is_successful,
    project_to_threat,
)
from advjax.attacks._guard import finite_gradient, guarded
from advjax.attacks._pgd import pgd
from advjax.attacks._threat import ThreatModel, get_threat_model
from advjax.losses import Loss, get_loss


def bim(
    eps,
    *,
    steps: int | None = None,
    step_size=None,
    norm: str | ThreatModel = "linf",
    loss: str | Loss = "ce",
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the basic iterative method / I-FGSM (Kurakin, Goodfellow & Bengio 2017).

    "Adversarial examples in the physical world", arXiv:1607.02533.

    PGD without a random start, returning the last iterate. Paper defaults: a
    step of one grey level ``(clip_max - clip_min) / 255`` and
    ``min(eps_px + 4, 1.25 * eps_px)`` steps, with ``eps_px`` the budget in grey
    levels (for a traced ``eps``, give ``steps`` and ``step_size``).

    Args:
      eps: the perturbation budget.
      steps: iterations (``None``: the paper's rule above).
      step_size: step length (``None``: one grey level).
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or a :class:`ThreatModel`.
      loss: the loss to ascend.
      targeted: ``y`` holds targets; the loss is descended.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` (the key is unused).

    Raises:
      ValueError: a bad budget or step, a traced ``eps`` without ``steps``, an
        empty range, an unknown norm or loss.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.bim(0.05)(logits_fn, jnp.full((1, 3), 0.5), jnp.array([0]),
      ...                                  key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - 0.5).max() <= 0.05 + 1e-6)
      True
    """
    check_epsilon(eps)
    check_range(clip_min, clip_max)
    if steps is None:
        if not is_concrete(eps):
            raise ValueError("bim with a traced eps needs an explicit steps=.")
        grey_levels = float(eps) * 255.0 / (clip_max - clip_min)
        steps = max(1, int(min(grey_levels + 4, 1.25 * grey_levels)))
    if step_size is None:
        step_size = (clip_max - clip_min) / 255.0
    return pgd(
        eps,
        steps=steps,
        step_size=step_size,
        norm=norm,
        loss=loss,
        random_start=False,
        targeted=targeted,
        keep_best=False,
        clip_min=clip_min,
        clip_max=clip_max,
    )


def mifgsm(
    eps,
    *,
    steps: int = 10,
    step_size=None,
    decay: float = 1.0,
    norm: str | ThreatModel = "linf",
    loss: str | Loss = "ce",
    targeted: bool = False,
    keep_best: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds MI-FGSM, the momentum iterative fast gradient sign method.

    Dong et al. (2018), "Boosting Adversarial Attacks with Momentum", arXiv:1710.06081.

    ``g <- decay * g + grad / ||grad||_1``; ``x <- Proj(x + step * direction(g))``.
    Paper defaults: ``decay = 1.0``, 10 steps of ``eps / 10``, no random start.

    Args:
      eps: the perturbation budget.
      steps: iterations.
      step_size: step length (``None``: ``eps / steps``).
      decay: the momentum factor ``mu``.
      norm: ``"linf"``, ``"l2"``, ``"l1"`` or a :class:`ThreatModel`.
      loss: the loss to ascend.
      targeted: ``y`` holds targets; the loss is descended.
      keep_best: return per example the strongest iterate (else the last).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv``.

    Raises:
      ValueError: a bad budget or step, ``steps < 1``, ``decay < 0``, an empty
        range, an unknown norm or loss.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x_adv = advjax.attacks.mifgsm(0.1)(logits_fn, jnp.full((1, 3), 0.5), jnp.array([0]),
      ...                                    key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - 0.5).max() <= 0.1 + 1e-6)
      True
    """
    check_epsilon(eps)
    steps = check_positive_int(steps, "steps")
    check_range(clip_min, clip_max)
    if decay < 0:
        raise ValueError(f"decay must be >= 0, got {decay}.")
    threat = get_threat_model(norm)
    loss_fn = get_loss(loss)
    if step_size is None:
        step_size = eps / steps
    check_epsilon(step_size, "step_size")

    def attack(logits_fn, x, y, *, key):
        del key
        grad_fn = jax.grad(attack_objective(logits_fn, loss_fn, y, targeted), has_aux=True)
        batch = x.shape[0]

        def body(_, carry):
            x_adv, momentum, best_x, best_success, best_loss = carry
            grad, (per_example, logits) = grad_fn(x_adv)
            grad = finite_gradient(grad)
            success = is_successful(logits, y, targeted)
            per_example = jnp.nan_to_num(per_example.astype(jnp.float32), nan=-jnp.inf)
            better = is_better(success, per_example, best_success, best_loss)
            best = (
                _select(better, x_adv, best_x),
                jnp.where(better, success, best_success),
                jnp.where(better, per_example, best_loss),
            )
            l1 = jnp.sum(jnp.abs(grad).reshape(batch, -1), -1)
            l1 = jnp.maximum(l1, 1e-12).reshape((batch,) + (1,) * (x.ndim - 1))
            momentum = decay * momentum + grad / l1
            x_next = project_to_threat(
                threat, x, x_adv + step_size * threat.direction(momentum), eps, clip_min, clip_max
            )
            return (x_next, momentum, *best)

        init = (x, jnp.zeros_like(x), x, jnp.zeros(batch, bool), jnp.full(batch, -jnp.inf))
        x_last, _, best_x, best_success, best_loss = jax.lax.fori_loop(0, steps, body, init)
        if not keep_best:
            return jax.lax.stop_gradient(x_last)
        _, (per_example, logits) = attack_objective(logits_fn, loss_fn, y, targeted)(x_last)
        success = is_successful(logits, y, targeted)
        better = is_better(success, per_example.astype(jnp.float32), best_success, best_loss)
        return jax.lax.stop_gradient(_select(better, x_last, best_x))

    return guarded(
        attack,
        name="mifgsm",
        eps=eps,
        norm=threat,
        clip_min=clip_min,
        clip_max=clip_max,
    )
