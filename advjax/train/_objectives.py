"""Training objectives: ``(params, state, batch, key) -> (loss, (metrics, batch_stats))``.

Every objective plugs into the one generic step of :mod:`advjax.train._step`.
Attacks inside an objective always run on the eval-mode model with the state's
own weights (``eval_logits(state)``, not the differentiated ``params``), so a
wrapper that evaluates the loss at other weights (:func:`advjax.train.awp`)
keeps the adversarial examples of the model being trained; the loss is
computed in train mode on the batch that is trained on, which is where
BatchNorm statistics are updated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from advjax.attacks import Attack
from advjax.losses import as_labels, ce
from advjax.train._state import TrainState, eval_logits, train_logits

Objective = Callable[..., tuple]
"""A training objective for :func:`make_step`.

``(params, state, batch, key) -> (loss, (metrics, batch_stats))``.
"""
Schedule = float | Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class AdversarialObjective:
    """An objective in two parts: adversarial inputs from the state's weights, then the loss.

    Calling it is the objective ``(params, state, batch, key) -> (loss, aux)``:
    the key is split into the attack's key and the loss's (dropout) key, the
    attack runs on ``eval_logits(state)``, and only ``loss`` depends on
    ``params``. Wrappers that need the loss at other weights for the same
    adversarial inputs (:func:`advjax.train.awp`) call the parts themselves.

    Attributes:
      inputs: ``(state, batch, key) -> adversarial`` (a pytree, e.g. ``x_adv``).
      loss: ``(params, state, batch, adversarial, key) -> (loss, aux)``.

    Example:
      >>> import advjax
      >>> from advjax import train
      >>> objective = train.pgd_at(lambda e: advjax.pgd(e, steps=2, keep_best=False), 0.1)
      >>> isinstance(objective, train.AdversarialObjective), callable(objective.inputs)
      (True, True)
    """

    inputs: Callable
    loss: Callable

    def __call__(self, params, state: TrainState, batch, key):
        attack_key, loss_key = jax.random.split(key)
        adversarial = self.inputs(state, batch, attack_key)
        return self.loss(params, state, batch, adversarial, loss_key)


def as_schedule(value: Schedule, name: str = "value") -> Callable[[jax.Array], jax.Array]:
    """Turns a number into a constant optax schedule; schedules (callables) pass through.

    Args:
        value: A number or a schedule ``step -> value``.
        name: The argument's name, for the error message.

    Returns:
        A schedule ``step -> value``.

    Raises:
        TypeError: If ``value`` is neither callable nor a number.

    Example:
      >>> from advjax import train
      >>> float(train.as_schedule(0.3)(100)), float(train.as_schedule(lambda s: s / 10)(5))
      (0.3, 0.5)
    """
    if callable(value):
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a number or a schedule (callable); got {value!r}")
    try:
        float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a number or a schedule (callable); got {value!r}"
        ) from None
    return optax.constant_schedule(value)


def accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Share of examples whose argmax matches the labels (or the soft targets' argmax).

    Args:
      logits: ``(B, K)`` logits.
      y: Integer labels ``(B,)`` or soft targets ``(B, K)``.

    Returns:
      A scalar in ``[0, 1]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import train
      >>> float(train.accuracy(jnp.array([[2.0, 1.0], [0.0, 1.0]]), jnp.array([0, 0])))
      0.5
    """
    return jnp.mean(jnp.argmax(logits, axis=-1) == as_labels(y))


def standard() -> Objective:
    """Plain empirical risk minimisation with cross-entropy.

    Returns:
      An objective ``(params, state, batch, key) -> (loss, (metrics,
      batch_stats))`` for :func:`make_step`; metrics ``loss`` and ``clean_acc``.

    Example:
      >>> from advjax import train
      >>> objective = train.standard()
    """

    def objective(params, state: TrainState, batch, key):
        x, y = batch
        logits, batch_stats = train_logits(state, params, x, key)
        loss = jnp.mean(ce(logits, y))
        return loss, ({"loss": loss, "clean_acc": accuracy(logits, y)}, batch_stats)

    return objective


def pgd_at(
    make_attack: Callable[[jax.Array], Attack],
    epsilon: Schedule,
    *,
    clean_weight: float = 0.0,
    alternate: bool = False,
) -> Objective:
    """Adversarial training (Madry et al. 2018, arXiv:1706.06083): train on adversarial examples.

    The loss is ``(1 - w) * CE(adv) + w * CE(clean)`` with ``w = clean_weight``
    (Madry: ``0``; Goodfellow et al. 2015 mix: ``0.5``). The attack's budget
    follows ``epsilon``, an optax schedule of the step (a ramp avoids the
    collapse to a constant prediction seen at eps 0.3 on MNIST).

    With ``alternate=True`` whole batches alternate instead of being mixed:
    even steps train on the clean batch, odd steps on its adversarial version
    (Kurakin et al. 2017 style). Both branches live in one compiled step
    (``lax.cond`` on ``state.step``), so the attack only runs on odd steps and
    the step is compiled once.

    Args:
      make_attack: ``eps -> attack``, e.g. ``lambda e: advjax.pgd(e, steps=10,
        step_size=e / 4, keep_best=False)``; called with a traced ``eps``.
      epsilon: a budget or an optax schedule of the step.
      clean_weight: weight of the clean loss in ``[0, 1]`` (mixed batches only).
      alternate: alternate clean and adversarial batches.

    Returns:
      An objective for :func:`make_step`.

    Example:
      >>> import advjax
      >>> from advjax import train
      >>> objective = train.pgd_at(lambda e: advjax.pgd(e, steps=10, keep_best=False), 0.3)
    """
    if not 0.0 <= clean_weight <= 1.0:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}.")
    if alternate and clean_weight > 0.0:
        raise ValueError(
            "alternate=True trains whole clean and adversarial batches in turn; "
            f"clean_weight={clean_weight} only applies to mixed batches (alternate=False)."
        )
    epsilon_at = as_schedule(epsilon)

    def attack(state: TrainState, batch, key):
        x, y = batch
        return make_attack(epsilon_at(state.step))(eval_logits(state), x, y, key=key)

    def adversarial_loss(params, state: TrainState, batch, x_adv, dropout_key):
        x, y = batch
        eps = epsilon_at(state.step)
        if clean_weight > 0.0:
            both, batch_stats = train_logits(
                state, params, jnp.concatenate([x, x_adv]), dropout_key
            )
            clean_logits, adv_logits = jnp.split(both, 2)
        else:
            adv_logits, batch_stats = train_logits(state, params, x_adv, dropout_key)
            clean_logits = jax.lax.stop_gradient(eval_logits(state, params)(x))
        adv_loss = jnp.mean(ce(adv_logits, y))
        clean_loss = jnp.mean(ce(clean_logits, y))
        loss = (1.0 - clean_weight) * adv_loss + clean_weight * clean_loss
        metrics = {
            "loss": loss,
            "adv_loss": adv_loss,
            "clean_loss": clean_loss,
            "adv_acc": accuracy(adv_logits, y),
            "clean_acc": accuracy(clean_logits, y),
            "eps": jnp.asarray(eps, jnp.float32),
        }
        return loss, (metrics, batch_stats)

    mixed = AdversarialObjective(attack, adversarial_loss)
    if not alternate:
        return mixed

    def clean_only(params, state: TrainState, batch, key):
        x, y = batch
        logits, batch_stats = train_logits(state, params, x, jax.random.split(key)[1])
        loss = jnp.mean(ce(logits, y))
        nan = jnp.asarray(jnp.nan, jnp.float32)
        metrics = {
            "loss": loss,
            "adv_loss": nan,
            "clean_loss": loss,
            "adv_acc": nan,
            "clean_acc": accuracy(logits, y),
            "eps": jnp.asarray(epsilon_at(state.step), jnp.float32),
        }
        return loss, (metrics, batch_stats)

    def alternating(params, state: TrainState, batch, key):
        return jax.lax.cond(state.step % 2 == 0, clean_only, mixed, params, state, batch, key)

    return alternating
