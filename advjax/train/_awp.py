"""Adversarial weight perturbation (AWP) around any adversarial-training objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax.train._objectives import AdversarialObjective, Objective
from advjax.train._state import TrainState

_TINY = 1e-20


def weight_perturbation(params, grads, gamma: float, *, min_ndim: int = 2):
    """Layer-wise AWP step: ``gamma * ||w|| * g / ||g||`` for every weight tensor.

    Tensors with fewer than ``min_ndim`` dimensions (biases, BatchNorm scales)
    are not perturbed, as in the reference code.

    Args:
      params: the weights ``w`` (a pytree).
      grads: the ascent direction, e.g. the gradient of the adversarial loss at ``w``.
      gamma: the relative size of the perturbation of each tensor.
      min_ndim: smallest number of dimensions of a perturbed tensor.

    Returns:
      The perturbation ``v``, a pytree like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import train
      >>> w = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
      >>> g = {"kernel": jnp.array([[3.0, 4.0], [0.0, 0.0]]), "bias": jnp.ones(2)}
      >>> v = train.weight_perturbation(w, g, 0.1)
      >>> [round(float(a), 2) for a in v["kernel"].ravel()], v["bias"].tolist()
      ([0.12, 0.16, 0.0, 0.0], [0.0, 0.0])
    """

    def perturb(w, g):
        if w.ndim < min_ndim:
            return jnp.zeros_like(w)
        g = g.astype(jnp.float32)
        scale = gamma * jnp.linalg.norm(w.astype(jnp.float32)) / (jnp.linalg.norm(g) + _TINY)
        return (scale * g).astype(w.dtype)

    return jax.tree.map(perturb, params, grads)


def global_norm(tree) -> jax.Array:
    """The L2 norm of all the leaves of ``tree`` together, in fp32.

    Args:
      tree: A pytree of arrays (e.g. parameters or gradients).

    Returns:
      A float32 scalar ``sqrt(sum of squares of every leaf)``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(global_norm({"w": jnp.array([3.0]), "b": jnp.array([[4.0]])}))
      5.0
    """
    return jnp.sqrt(
        sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(tree))
    )


def awp(objective: Objective, *, gamma: float = 0.01, warmup_steps: int = 0) -> Objective:
    """Adversarial weight perturbation (Wu, Xia & Wang 2020) around an objective.

    "Adversarial Weight Perturbation Helps Robust Generalization"
    (arXiv:2004.05884). Each step first takes one layer-wise normalised
    gradient-*ascent* step on the weights, ``v = gamma * ||w|| * g / ||g||``
    with ``g`` the gradient of ``objective`` at ``w`` (weight tensors only, see
    :func:`weight_perturbation`), then returns the objective at ``w + v``: its
    gradient, taken at the perturbed weights, updates ``w`` (the reference
    code's perturb, step, restore). The objective's attack runs on the state's
    own weights ``w``, and both passes use the step's key, so the adversarial
    examples are those of ``w``. Reference defaults: PGD-AT ``gamma=0.01`` with
    no warm-up; TRADES ``gamma=0.005`` after 10 warm-up epochs.

    The ascent pass costs one more forward and backward pass of the loss; the
    attack runs once per step (the objective's ``inputs``).

    Args:
      objective: an :class:`AdversarialObjective` (``pgd_at`` without
        ``alternate``, ``fgsm_rs``, ``trades``, ``mart``).
      gamma: relative size of the weight perturbation (``> 0``).
      warmup_steps: steps of plain ``objective`` before AWP starts.

    Returns:
      An objective for :func:`make_step`; its metrics add ``awp_norm``, the
      global norm of ``v`` (``0`` during warm-up).

    Raises:
      TypeError: ``objective`` is not split into attack and loss.
      ValueError: ``gamma`` is not positive or ``warmup_steps`` is negative.

    Example:
      >>> import advjax
      >>> from advjax import train
      >>> at = train.pgd_at(lambda e: advjax.pgd(e, steps=10, keep_best=False), 0.3)
      >>> objective = train.awp(at, gamma=0.01)
    """
    if not isinstance(objective, AdversarialObjective):
        raise TypeError(
            "awp needs an objective split into its attack and its loss (an "
            "advjax.train.AdversarialObjective: pgd_at without alternate=True, fgsm_rs, "
            f"trades or mart), got {objective!r}."
        )
    if not gamma > 0.0:
        raise ValueError(f"gamma must be > 0, got {gamma}.")
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps}.")

    def perturbed_loss(params, state: TrainState, batch, adversarial, key):
        def loss_at(weights):
            return objective.loss(weights, state, batch, adversarial, key)

        def perturbation(weights):
            grads, _ = jax.grad(loss_at, has_aux=True)(weights)
            return weight_perturbation(weights, grads, gamma)

        if warmup_steps == 0:
            v = perturbation(params)
        else:
            v = jax.lax.cond(
                state.step >= warmup_steps,
                perturbation,
                lambda weights: jax.tree.map(jnp.zeros_like, weights),
                params,
            )
        v = jax.lax.stop_gradient(v)
        loss, (metrics, *rest) = loss_at(jax.tree.map(jnp.add, params, v))
        metrics = {**metrics, "awp_norm": global_norm(v)}
        return loss, (metrics, *rest)

    return AdversarialObjective(objective.inputs, perturbed_loss)
