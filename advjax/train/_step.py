"""The one generic, compiled training step shared by every objective."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from advjax._checks import check_batch, check_positive_int
from advjax.train._objectives import Objective
from advjax.train._state import TrainState, eval_logits


def _split_aux(aux, state: TrainState):
    """``(metrics, batch_stats[, carry])`` -> ``(metrics, batch_stats, carry)``."""
    if not isinstance(aux, tuple) or len(aux) not in (2, 3):
        raise TypeError(
            "an objective must return (loss, (metrics, batch_stats)) or "
            f"(loss, (metrics, batch_stats, carry)); its auxiliary output was {type(aux)}."
        )
    if len(aux) == 2:
        return aux[0], aux[1], state.carry
    return aux


def check_training_batch(state: TrainState, batch) -> None:
    """The validation layer for a training batch ``(x, y, ...)``.

    Inputs must be floating and finite; labels integer ``[B]`` in ``[0, K)`` or
    one-hot/probability rows ``[B, K]`` for the model's ``K`` (value checks stay
    alive inside the jitted step). The input range is the attacks' to check.

    Args:
      state: The training state (its eval-mode model gives ``K``).
      batch: ``(x, y, ...)``: inputs ``(B, ...)`` and labels ``(B,)`` or ``(B, K)``.

    Returns:
      ``None``; raises on a bad batch.

    Raises:
      TypeError, ValueError, InvalidInputError: as :func:`advjax._checks.check_inputs`.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> check_training_batch(state, (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1])))
      >>> try:
      ...     check_training_batch(state, jnp.zeros((2, 28, 28, 1)))
      ... except TypeError as err:
      ...     print(err)
      a training batch is a tuple (x, y, ...), got ArrayImpl.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"a training batch is a tuple (x, y, ...), got {type(batch).__name__}.")
    x, y = batch[0], batch[1]
    check_batch(eval_logits(state), x, y)


AUGMENT_STREAM = 0x617567  # folded into the step key: augmentation's own random stream


def make_step(
    objective: Objective,
    *,
    replays: int = 1,
    jit: bool = True,
    augment: Callable | None = None,
) -> Callable:
    """Builds ``step(state, batch, key) -> (state, metrics)`` for an objective.

    The step's randomness is ``fold_in(key, state.step)``: keys are derived
    from the step counter, never stored, so a resumed run draws the same keys.

    An objective returns ``(loss, (metrics, batch_stats))``, or
    ``(loss, (metrics, batch_stats, carry))`` to carry arrays to the next
    update in ``state.carry`` (free adversarial training carries its
    perturbation this way). With ``replays=m`` each call makes ``m`` optimizer
    updates on the same batch inside one ``lax.scan`` (free AT's minibatch
    replay; ``state.step`` advances by ``m`` and every replay gets its own key);
    the returned metrics are the means over the replays.

    Args:
      objective: ``(params, state, batch, key) -> (loss, aux)`` as above.
      replays: optimizer updates per batch (``m`` of Shafahi et al. 2019).
      jit: compile the step with ``jax.jit`` (donating the old state).
      augment: ``(x, key) -> x``, e.g. :func:`advjax.data.random_crop_flip`,
        applied to the batch's inputs once per step (before any replay) with
        a key of its own derived from the step counter, so a resumed run
        augments exactly as an uninterrupted one; ``None``: no augmentation.

    Returns:
      The step function.

    Raises:
      ValueError: ``replays`` is not a positive integer.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> step = train.make_step(train.standard())
      >>> batch = (jnp.zeros((4, 28, 28, 1)), jnp.zeros((4,), jnp.int32))
      >>> state, metrics = step(state, batch, jax.random.key(1))
      >>> int(state.step)
      1
    """
    replays = check_positive_int(replays, "replays")
    grad_fn = jax.grad(objective, has_aux=True)

    def update(state: TrainState, batch, key):
        step_key = jax.random.fold_in(key, state.step)
        grads, aux = grad_fn(state.params, state, batch, step_key)
        metrics, batch_stats, carry = _split_aux(aux, state)
        new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
        if carry is not None:
            new_state = new_state.replace(carry=carry)
        return new_state, metrics

    def step(state: TrainState, batch, key):
        check_training_batch(state, batch)  # once per batch, not once per replay
        if augment is not None:
            x, *rest = batch
            stream = jax.random.fold_in(jax.random.fold_in(key, state.step), AUGMENT_STREAM)
            batch = (augment(x, stream), *rest)
        if replays == 1:
            return update(state, batch, key)

        def body(state, _):
            return update(state, batch, key)

        state, metrics = jax.lax.scan(body, state, None, length=replays)
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    return jax.jit(step, donate_argnums=0) if jit else step
