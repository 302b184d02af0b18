"""Attack transforms: functions from attacks to attacks, composed like optax chains."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax._checks import check_epsilon, check_positive_int
from advjax.attacks._core import Attack, attack_objective, is_better, is_successful
from advjax.losses import Loss, get_loss


def restart_keys(key: jax.Array, restarts: int) -> jax.Array:
    """The per-restart keys: restart ``i`` uses ``fold_in(key, i)``."""
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(jnp.arange(restarts))


def with_restarts(
    attack: Attack,
    restarts: int,
    *,
    loss: str | Loss = "ce",
    targeted: bool = False,
    batched: bool = True,
) -> Attack:
    """Runs ``attack`` from ``restarts`` keys and keeps, per example, the strongest result.

    The strongest is a successful adversarial example if any restart found one,
    otherwise the one with the highest ``loss`` (lowest for targeted attacks).
    Restart ``0`` runs with the caller's key itself, so restarts are never weaker
    than one run of ``attack`` with the same key.

    Args:
      attack: ``attack(logits_fn, x, y, *, key) -> x_adv``.
      restarts: the number of runs (>= 1).
      loss: the loss that ranks unsuccessful candidates.
      targeted: whether ``y`` holds target classes.
      batched: ``True`` vmaps over restarts (fast, memory grows with
        ``restarts``); ``False`` runs them one after another in a ``lax.scan``.

    Returns:
      An attack with the same signature.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> attack = advjax.with_restarts(advjax.pgd(eps=0.1, steps=3), 4)
      >>> x_adv = attack(logits_fn, jnp.full((2, 3), 0.5), jnp.array([0, 1]),
      ...                key=jax.random.key(0))
      >>> x_adv.shape
      (2, 3)
    """
    restarts = check_positive_int(restarts, "restarts")
    loss_fn = get_loss(loss)

    def score(logits_fn, x_adv, y):
        _, (per_example, logits) = attack_objective(logits_fn, loss_fn, y, targeted)(x_adv)
        success = is_successful(logits, y, targeted)
        return success, jnp.nan_to_num(per_example.astype(jnp.float32), nan=-jnp.inf)

    def keep_stronger(best, candidate):
        best_x, best_success, best_loss = best
        cand_x, cand_success, cand_loss = candidate
        better = is_better(cand_success, cand_loss, best_success, best_loss)
        mask = better.reshape(better.shape + (1,) * (cand_x.ndim - 1))
        return (
            jnp.where(mask, cand_x, best_x),
            jnp.where(better, cand_success, best_success),
            jnp.where(better, cand_loss, best_loss),
        )

    def run_one(logits_fn, x, y, key):
        x_adv = attack(logits_fn, x, y, key=key)
        return (x_adv, *score(logits_fn, x_adv, y))

    def restarted(logits_fn, x, y, *, key):
        keys = restart_keys(key, restarts).at[0].set(key)
        first = run_one(logits_fn, x, y, keys[0])
        if restarts == 1:
            return first[0]
        if batched:
            others = jax.vmap(lambda k: run_one(logits_fn, x, y, k))(keys[1:])
            best, _ = jax.lax.scan(lambda b, c: (keep_stronger(b, c), None), first, others)
        else:

            def body(best, k):
                return keep_stronger(best, run_one(logits_fn, x, y, k)), None

            best, _ = jax.lax.scan(body, first, keys[1:])
        return jax.lax.stop_gradient(best[0])

    return restarted


def over_epsilons(make_attack: Callable[[jax.Array], Attack], epsilons) -> Attack:
    """Vmaps an attack factory over a vector of budgets: one compiled sweep.

    Args:
      make_attack: ``eps -> attack``, e.g. ``lambda e: advjax.pgd(eps=e, steps=20)``;
        it is called with a traced ``eps``.
      epsilons: 1-D array of budgets ``[E]`` (non-negative).

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv[E, B, ...]``; every budget uses
      the same key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
      >>> sweep = advjax.over_epsilons(lambda e: advjax.fgsm(eps=e), jnp.array([0.0, 0.1]))
      >>> sweep(logits_fn, jnp.full((1, 2), 0.5), jnp.array([0]), key=jax.random.key(0)).shape
      (2, 1, 2)
    """
    epsilons = jnp.asarray(epsilons, jnp.float32)
    if epsilons.ndim != 1:
        raise ValueError(f"epsilons must be a 1-D array, got shape {epsilons.shape}.")
    check_epsilon(epsilons, "epsilons")

    def sweep(logits_fn, x, y, *, key):
        return jax.vmap(lambda eps: make_attack(eps)(logits_fn, x, y, key=key))(epsilons)

    return sweep
