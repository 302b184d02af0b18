"""The fast gradient (sign) method: one projected-gradient step."""

from __future__ import annotations

import functools

from advjax.attacks._core import Attack
from advjax.attacks._pgd import pgd
from advjax.attacks._threat import ThreatModel
from advjax.losses import Loss


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
    """Builds the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015).

    "Explaining and Harnessing Adversarial Examples", arXiv:1412.6572.

    ``x_adv = clip(x + eps * sign(grad))`` for Linf; for L2 (FGM) the step is the
    normalised gradient. With ``random_start=True`` and a ``step_size`` it is
    the FGSM-RS step of Wong, Rice & Kolter (2020, "Fast is better than free",
    arXiv:2001.03994): a uniform start in the ball,
    one step of size ``step_size`` (they use ``1.25 * eps``), then projection.

    Args:
      eps: the perturbation budget.
      norm: ``"linf"`` (FGSM) or ``"l2"`` (FGM), or any :class:`ThreatModel`
        (the step is ``step_size * threat.direction(grad)``).
      loss: the loss to ascend (name or callable).
      targeted: when true, ``y`` holds target classes and the loss is descended.
      random_start: start from a uniform point in the ball.
      step_size: the step length in the threat model's norm; ``None`` means ``eps``.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv`` for ``x`` of shape ``[B, ...]``.

    Raises:
      ValueError: a negative or non-finite budget or step, an empty range, an
        unknown norm or loss.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> x = jnp.full((1, 3), 0.5)
      >>> advjax.fgsm(eps=0.1)(logits_fn, x, jnp.array([0]), key=jax.random.key(0))
      Array([[0.4, 0.4, 0.4]], dtype=float32)
    """
    return pgd(
        eps,
        steps=1,
        step_size=eps if step_size is None else step_size,
        norm=norm,
        loss=loss,
        random_start=random_start,
        targeted=targeted,
        keep_best=False,
        clip_min=clip_min,
        clip_max=clip_max,
    )


fgm = functools.partial(fgsm, norm="l2")
fgm.__doc__ = """The fast gradient method: :func:`fgsm` with ``norm='l2'``.

A step of L2 length ``eps`` along the normalised gradient (Goodfellow et al.
2015, arXiv:1412.6572; the L2 variant of Miyato et al. 2016, arXiv:1605.07725).

Example:
  >>> import jax, jax.numpy as jnp
  >>> import advjax
  >>> logits_fn = lambda x: jnp.stack([x @ jnp.array([3.0, 4.0]), jnp.zeros(1)], axis=-1)
  >>> x_adv = advjax.attacks.fgm(eps=0.5)(logits_fn, jnp.full((1, 2), 0.5), jnp.array([0]),
  ...                                     key=jax.random.key(0))
  >>> [round(v, 4) for v in x_adv[0].tolist()]
  [0.2, 0.1]
"""

#: Run by doctest: ``fgm`` is a ``functools.partial``, which doctest does not search.
__test__ = {"fgm": fgm.__doc__}
