"""The one generic, compiled training step shared by every objective."""

from __future__ import annotations

from collections.abc import Callable

import jax

from advjax.train._objectives import Objective
from advjax.train._state import TrainState


def make_step(objective: Objective, *, jit: bool = True) -> Callable:
    """Builds ``step(state, batch, key) -> (state, metrics)`` for an objective.

    The step's randomness is ``fold_in(key, state.step)``: keys are derived
    from the step counter, never stored, so a resumed run draws the same keys.

    Args:
      objective: ``(params, state, batch, key) -> (loss, (metrics, batch_stats))``.
      jit: compile the step with ``jax.jit`` (donating the old state).

    Returns:
      The step function.

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

    def step(state: TrainState, batch, key):
        step_key = jax.random.fold_in(key, state.step)
        grad_fn = jax.grad(objective, has_aux=True)
        grads, (metrics, batch_stats) = grad_fn(state.params, state, batch, step_key)
        new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
        return new_state, metrics

    return jax.jit(step, donate_argnums=0) if jit else step
