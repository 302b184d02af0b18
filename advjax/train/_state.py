"""The training state: Flax's ``TrainState`` plus BatchNorm statistics."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax.training import train_state

from advjax.backend import default_fast_conv_grads


class TrainState(train_state.TrainState):
    """Flax ``TrainState`` carrying the model's non-trainable ``batch_stats``.

    ``apply_fn`` is a Flax ``Module.apply`` whose module takes a ``train``
    keyword (every model in :mod:`advjax.models` does). Attacks always see
    :func:`eval_logits`, the eval-mode model; the training pass uses
    :func:`train_logits`, which returns updated statistics.

    Example:
      >>> import jax, optax
      >>> from advjax import models, train
      >>> model = models.get_model("fast_mnist")
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=variables["params"],
      ...                                 tx=optax.adam(1e-3))
      >>> int(state.step)
      0
    """

    batch_stats: Any = None
    carry: Any = None
    """Arrays an objective carries from step to step (e.g. free AT's perturbation), or ``None``.

    An objective that uses it returns ``(loss, (metrics, batch_stats, carry))``
    and :func:`make_step` stores the new carry; it is checkpointed with the
    state, so resumed runs stay exact.
    """

    @classmethod
    def create(cls, *, apply_fn, params, tx, **kwargs):
        """A new state at step 0, holding its own copy of ``params`` and ``batch_stats``.

        The compiled step of :func:`make_step` donates the state it is given, so
        the state must not share buffers with arrays the caller keeps (a second
        state built from the same initial variables would find them deleted).

        Args:
          apply_fn: the model's ``apply`` (a linen module's, or an
            :class:`advjax.models.NNXModel` / :class:`advjax.models.EquinoxModel`'s).
          params: the trainable parameters (copied).
          tx: the optax optimizer.
          **kwargs: further fields, e.g. ``batch_stats`` (copied) or ``carry``.

        Returns:
          The state, with ``opt_state = tx.init(params)``.
        """
        params = jax.tree.map(jnp.array, params)
        if kwargs.get("batch_stats") is not None:
            kwargs["batch_stats"] = jax.tree.map(jnp.array, kwargs["batch_stats"])
        return super().create(apply_fn=apply_fn, params=params, tx=tx, **kwargs)

    def variables(self, params=None) -> dict:
        """The model's variables with ``params`` (default: the state's own)."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


def eval_logits(state: TrainState, params=None, *, fast_conv_grads: bool | None = None):
    """The eval-mode logits function of ``state``: no statistics update, no dropout.

    On CPU it is wrapped in ``advjax.backend.fast_conv_grads`` (same values and
    gradients, faster input gradients inside attack loops); ``fast_conv_grads``
    set to ``False``/``True`` turns that off/on on any backend.

    Args:
      state: The training state.
      params: Parameters to use instead of ``state.params`` (``None``: the state's).
      fast_conv_grads: Force the CPU convolution-gradient wrapper on/off
        (``None``: on for CPU only).

    Returns:
      ``logits_fn(x (B, ...)) -> logits (B, K)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> train.eval_logits(state)(jnp.zeros((3, 28, 28, 1))).shape
      (3, 10)
    """
    variables = state.variables(params)
    return default_fast_conv_grads(
        lambda x: state.apply_fn(variables, x, train=False), fast_conv_grads
    )


def train_logits(state: TrainState, params, x: jax.Array, key: jax.Array):
    """Runs the model in train mode on ``x``; returns ``(logits, new_batch_stats)``.

    Dropout draws from ``key``; BatchNorm uses and updates the batch statistics
    (the new statistics are returned, the state is untouched).

    Args:
      state: The training state (its ``apply_fn`` takes a ``train`` keyword).
      params: The parameters to evaluate (differentiated by the objectives).
      x: Inputs ``(B, ...)``.
      key: PRNG key for dropout.

    Returns:
      ``(logits (B, K), batch_stats)``; ``batch_stats`` is the state's own when
      the model has none.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> logits, _ = train.train_logits(state, state.params, jnp.zeros((3, 28, 28, 1)),
      ...                                jax.random.key(1))
      >>> logits.shape
      (3, 10)
    """
    variables = state.variables(params)
    rngs = {"dropout": key}
    if state.batch_stats:
        logits, updates = state.apply_fn(
            variables, x, train=True, rngs=rngs, mutable=["batch_stats"]
        )
        return logits, updates["batch_stats"]
    return state.apply_fn(variables, x, train=True, rngs=rngs), state.batch_stats
