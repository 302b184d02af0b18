"""Data-parallel (and optionally parameter-sharded) training steps."""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.sharding import Mesh, NamedSharding

from advjax.parallel._mesh import batch_divisor, batch_sharding, param_sharding, replicated


def _sharding_on(leaf, mesh: Mesh) -> NamedSharding:
    """``leaf``'s sharding if it already lives on ``mesh``, else replicated on it."""
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
        return sharding
    return replicated(mesh)


def state_sharding(state, mesh: Mesh, *, shard_params: bool = False, min_size: int = 2**16):
    """The shardings :func:`shard_train_state` gives a ``TrainState`` (same structure).

    Replicated by default (an array already placed on ``mesh`` keeps its
    sharding); with ``shard_params`` the large arrays (parameters,
    optimizer moments, BatchNorm statistics alike) follow
    :func:`param_sharding`.

    Args:
      state: an :class:`advjax.train.TrainState` (any pytree works).
      mesh: from :func:`make_mesh`.
      shard_params: split arrays of at least ``min_size`` elements over the mesh.
      min_size: the element count from which an array is split.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``state``.

    Example:
      >>> import jax, optax
      >>> from advjax import models, parallel, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> s = parallel.state_sharding(state, parallel.make_mesh())
      >>> tuple(s.params["Dense_0"]["kernel"].spec)
      ()
    """
    if shard_params:
        return param_sharding(state, mesh, min_size=min_size)
    return jax.tree.map(lambda leaf: _sharding_on(leaf, mesh), state)


def shard_train_state(state, mesh: Mesh, *, shard_params: bool = False, min_size: int = 2**16):
    """Places a ``TrainState`` on ``mesh``: replicated, or large arrays split over it.

    Args:
      state: an :class:`advjax.train.TrainState` (any pytree works).
      mesh: from :func:`make_mesh`.
      shard_params: split arrays of at least ``min_size`` elements over the
        mesh (ZeRO-3 / FSDP style, for models too large to copy to every
        device); XLA gathers each weight where it is used.
      min_size: see ``shard_params``.

    Returns:
      The same state, its arrays placed on the mesh.

    Example:
      >>> import jax, optax
      >>> from advjax import models, parallel, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> state = parallel.shard_train_state(state, parallel.make_mesh())
      >>> int(state.step)
      0
    """
    shardings = state_sharding(state, mesh, shard_params=shard_params, min_size=min_size)
    return jax.device_put(state, shardings)


def sharded_step(step: Callable, mesh: Mesh, *, donate: bool = True) -> Callable:
    """Compiles a training step with the batch split over ``mesh``.

    ``step(state, batch, key) -> (state, metrics)`` is usually
    :func:`advjax.train.make_step`'s (jitted or not). Gradients are means over
    the global batch, so XLA inserts the cross-device reduction; the new state
    keeps the sharding the state came in with (from :func:`shard_train_state`),
    and metrics come back replicated. The global batch size must be a multiple
    of the device count (padding would change the loss).

    Args:
      step: the training step.
      mesh: from :func:`make_mesh`.
      donate: donate the old state's buffers, as ``make_step`` does.

    Returns:
      ``step(state, batch, key) -> (state, metrics)``, compiled once per
      state structure and sharding.

    Raises:
      ValueError: when called, if the global batch size is not a multiple of
        the mesh's device count.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from advjax import models, parallel, train
      >>> mesh = parallel.make_mesh()
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = parallel.shard_train_state(
      ...     train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                             tx=optax.sgd(0.1)), mesh)
      >>> step = parallel.sharded_step(train.make_step(train.standard()), mesh)
      >>> n = 2 * len(jax.devices())
      >>> batch = (jnp.zeros((n, 28, 28, 1)), jnp.zeros((n,), jnp.int32))
      >>> state, metrics = step(state, batch, jax.random.key(1))
      >>> int(state.step)
      1
    """
    data = batch_sharding(mesh)
    divisor = batch_divisor(data)
    compiled: dict = {}

    def run(state, batch, key):
        for leaf in jax.tree.leaves(batch):
            if leaf.shape[0] % divisor:
                raise ValueError(
                    f"the global batch size {leaf.shape[0]} is not a multiple of the "
                    f"{divisor} devices; use a batch size that is (padding would change "
                    "the loss)."
                )
        shardings = jax.tree.map(lambda a: _sharding_on(a, mesh), state)
        cache_key = (jax.tree.structure(state), tuple(jax.tree.leaves(shardings)))
        if cache_key not in compiled:
            compiled[cache_key] = jax.jit(
                step,
                in_shardings=(shardings, data, replicated(mesh)),
                out_shardings=(shardings, replicated(mesh)),
                donate_argnums=(0,) if donate else (),
            )
        return compiled[cache_key](state, batch, key)

    return run
