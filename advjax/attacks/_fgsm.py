"""The fast gradient (sign) method: one projected-gradient step."""

from __future__ import annotations

import functools

from advjax._checks import check_epsilon, check_inputs, check_range
from advjax.attacks._core import Attack, projected_gradient_ascent
from advjax.attacks._threat import ThreatModel, get_threat_model
from advjax.losses import Loss, get_loss


def fgsm(
    eps,
    *,
    norm: str | ThreatModel = "linf",
    loss: str | Loss = "ce",
    targeted: bool = False,
    random_start: bool = False,
    step_size=None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Attack:
    """Builds the fast gradient sign method (Goodfellow et al. 2015).

    ``x_adv = clip(x + eps * sign(grad))`` for Linf; for L2 (FGM) the step is the
    normalised gradient. With ``random_start=True`` and a ``step_size`` it is
    the FGSM-RS step of Wong, Rice & Kolter (2020): a uniform start in the ball,
    one step of size ``step_size`` (they use ``1.25 * eps``), then projection.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"`` (FGSM) or ``"l2"`` (FGM), or a :class:`ThreatModel`.
      loss: the loss to ascend (name or callable).
      targeted: when true, ``y`` holds target classes and the loss is descended.
      random_start: start from a uniform point in the ball.
      step_size: the step length; ``None`` means ``eps``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x = jnp.full((1, 3), 0.5)
      >>> advjax.fgsm(eps=0.1)(logits_fn, x, jnp.array([0]), key=jax.random.key(0))
      Array([[0.4, 0.4, 0.4]], dtype=float32)
    """
    check_epsilon(eps)
    check_range(clip_min, clip_max)
    threat = get_threat_model(norm)
    loss_fn = get_loss(loss)
    step_size = eps if step_size is None else step_size
    check_epsilon(step_size, "step_size")

    def attack(logits_fn, x, y, *, key):
        check_inputs(x, y, clip_min, clip_max)
        return projected_gradient_ascent(
            logits_fn,
            x,
            y,
            key,
            eps=eps,
            step_size=step_size,
            steps=1,
            threat=threat,
            loss=loss_fn,
            targeted=targeted,
            random_start=random_start,
            keep_best=False,
            clip_min=clip_min,
            clip_max=clip_max,
        )

    return attack


fgm = functools.partial(fgsm, norm="l2")
fgm.__doc__ = "The fast gradient method: :func:`fgsm` with ``norm='l2'``."
