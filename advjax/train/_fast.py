"""FGSM with random start, "fast" adversarial training (Wong, Rice & Kolter 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax.attacks import Attack, fgsm, finite_gradient, guarded
from advjax.losses import ce
from advjax.train._objectives import Objective, Schedule, pgd_at
from advjax.train._trades import _check_positive


def _fgsm_unclipped_start(eps, step_size) -> Attack:
    """FGSM-RS as in ``locuslab/fast_adversarial``'s MNIST script (valid range ``[0, 1]``).

    The uniform start is *not* clipped to the valid range: the gradient is taken
    at ``x + delta`` (which may leave ``[0, 1]``), the step is added to that
    ``delta``, which is then projected onto the ball and the valid range.
    """

    def run(logits_fn, x, y, *, key):
        e = jnp.asarray(eps, x.dtype)
        delta = jax.random.uniform(key, x.shape, x.dtype, -e, e)
        grad = finite_gradient(jax.grad(lambda d: jnp.sum(ce(logits_fn(x + d), y)))(delta))
        delta = jnp.clip(delta + jnp.asarray(step_size, x.dtype) * jnp.sign(grad), -e, e)
        return jnp.clip(x + delta, 0.0, 1.0)

    return guarded(
        run, name="fgsm_rs (unclipped start)", eps=eps, norm="linf", clip_min=0.0, clip_max=1.0
    )


def fgsm_rs(
    epsilon: Schedule = 0.3,
    *,
    alpha: float = 0.375,
    max_epsilon: float | None = None,
    clean_weight: float = 0.0,
    clip_start: bool = True,
) -> Objective:
    """FGSM-RS adversarial training: one FGSM step of size ``alpha`` from a uniform start.

    Wong, Rice & Kolter (2020), "Fast is better than free: Revisiting
    adversarial training" (arXiv:2001.03994). The perturbation starts uniform
    in the Linf ball, takes one signed-gradient step of ``alpha`` (``1.25 *
    eps``), is projected back onto the ball and the valid range, and the model
    is trained on it. Their MNIST recipe: ``eps=0.3, alpha=0.375``, 10 epochs,
    batch 100, Adam with a cyclic learning rate peaking at 5e-3; CIFAR-10:
    ``eps=8/255, alpha=10/255``, 15 epochs, SGD with a cyclic rate up to 0.2.

    FGSM training can *catastrophically overfit*: PGD accuracy collapses to
    ~0% within an epoch while FGSM accuracy soars. Detect it with a PGD check
    on a held-out batch (:func:`robust_eval_fn`) and stop with
    ``fit(..., early_stopping=EarlyStopping(max_drop=0.2))``, keeping the
    ``best`` checkpoint (selected on the same PGD accuracy).

    Args:
      epsilon: the Linf budget or an optax schedule of the step.
      alpha: the FGSM step at the full budget; with a schedule it is scaled by
        ``eps / max_epsilon``.
      max_epsilon: the budget at which ``alpha`` applies (default: ``epsilon``
        when constant; required with a schedule).
      clean_weight: optional weight of the clean loss (Wong et al.: ``0``).
      clip_start: clip the uniform start to the valid range ``[0, 1]`` before
        taking the gradient, as their CIFAR-10 code does. ``False`` is their
        MNIST code: the gradient is taken at the unclipped ``x + delta`` and
        the step starts from the unclipped ``delta``. On MNIST this matters:
        clipping makes most background pixels end exactly at ``+-eps`` (plain
        FGSM there), which overfits catastrophically on small training sets.

    Returns:
      An objective for :func:`make_step`.

    Raises:
      ValueError: for a non-positive ``alpha`` or a schedule without ``max_epsilon``.

    Example:
      >>> from advjax import train
      >>> objective = train.fgsm_rs(0.3, alpha=0.375)
    """
    _check_positive(alpha, "alpha")
    if max_epsilon is None:
        if callable(epsilon):
            raise ValueError(
                "fgsm_rs with an epsilon schedule needs max_epsilon, the budget at which "
                "alpha applies (alpha is scaled by eps / max_epsilon)."
            )
        max_epsilon = float(epsilon)
    _check_positive(max_epsilon, "max_epsilon")
    ratio = alpha / max_epsilon

    def make_attack(eps):
        if not clip_start:
            return _fgsm_unclipped_start(eps, ratio * eps)
        return fgsm(eps, random_start=True, step_size=ratio * eps)

    return pgd_at(make_attack, epsilon, clean_weight=clean_weight)
