"""Initialising and applying zoo models: the eval-mode logits function and train step."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from advjax.backend import default_fast_conv_grads

Variables = dict[str, Any]
LogitsFn = Callable[[jax.Array], jax.Array]


def _as_batched_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """Prepends a batch axis of 1 to an unbatched ``(H, W, C)`` shape."""
    shape = tuple(int(d) for d in input_shape)
    return (1, *shape) if len(shape) == 3 else shape


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _jit_init(model: nn.Module, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> Variables:
    """Compiled eval-mode init, cached per (hashable) model, shape and dtype."""
    return model.init(key, jnp.zeros(shape, dtype), train=False)


def init_model(
    model: nn.Module,
    key: jax.Array,
    input_shape: Sequence[int],
    dtype: Any = jnp.float32,
) -> Variables:
    """Initialises a model's variables in eval mode.

    Args:
      model: A Flax module with ``__call__(x, train=False)``.
      key: PRNG key for parameter initialisation.
      input_shape: Input shape, ``(B, H, W, C)`` or unbatched ``(H, W, C)``
        (a batch axis of 1 is then added); values never matter.
      dtype: Input dtype used for tracing.

    Returns:
      A plain dict with ``'params'`` and, for BatchNorm models, ``'batch_stats'``
      (running mean 0 / variance 1).

    Example:
      >>> import jax
      >>> from advjax.models import FastMNISTNet
      >>> variables = init_model(FastMNISTNet(), jax.random.key(0), (28, 28, 1))
      >>> sorted(variables), variables["params"]["conv1"]["kernel"].shape
      (['params'], (4, 4, 1, 16))
    """
    shape = _as_batched_shape(input_shape)
    try:
        hash(model)
    except TypeError:  # e.g. a list-valued attribute: compile without caching
        return dict(jax.jit(lambda k: model.init(k, jnp.zeros(shape, dtype), train=False))(key))
    return dict(_jit_init(model, key, shape, dtype))


def param_count(variables: Mapping[str, Any]) -> int:
    """Number of trainable parameters (the ``'params'`` collection).

    Args:
      variables: Variables as returned by :func:`init_model`, or a params tree
        without the ``'params'`` key.

    Returns:
      Total number of scalar parameters.

    Example:
      >>> import jax
      >>> from advjax.models import FastMNISTNet
      >>> param_count(init_model(FastMNISTNet(), jax.random.key(0), (28, 28, 1)))
      166406
    """
    params = variables.get("params", variables)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def eval_logits_fn(
    model: nn.Module, variables: Mapping[str, Any], *, fast_conv_grads: bool | None = None
) -> LogitsFn:
    """Returns ``x -> logits`` in eval mode: the function attacks differentiate.

    The model runs with ``train=False``, no mutable collections and no rngs, so
    BatchNorm uses (and never updates) its running averages and dropout is
    never applied: the function is deterministic and pure. It is safe under
    ``jax.jit``, ``jax.grad``, ``jax.jvp`` and ``jax.vmap``.

    On CPU the function is wrapped in ``advjax.backend.fast_conv_grads``
    (same values and gradients; an attack's per-step input gradient of a
    convolutional model then costs about half as much inside XLA:CPU's loops).

    Args:
      model: A zoo model.
      variables: Its variables (``'params'`` and optional ``'batch_stats'``).
      fast_conv_grads: ``None`` (default): wrap on the CPU backend only;
        ``True``/``False``: always / never.

    Returns:
      A function mapping NHWC inputs ``[B, H, W, C]`` to logits ``[B, K]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import FastMNISTNet
      >>> model = FastMNISTNet()
      >>> f = eval_logits_fn(model, init_model(model, jax.random.key(0), (28, 28, 1)))
      >>> logits = jax.jit(f)(jnp.zeros((2, 28, 28, 1)))
      >>> logits.shape, logits.dtype
      ((2, 10), dtype('float32'))
      >>> jax.grad(lambda x: f(x)[:, 0].sum())(jnp.zeros((2, 28, 28, 1))).shape
      (2, 28, 28, 1)
    """
    variables = dict(variables)

    def logits_fn(x: jax.Array) -> jax.Array:
        return model.apply(variables, x, train=False)

    return default_fast_conv_grads(logits_fn, fast_conv_grads)


def train_apply(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: jax.Array,
    *,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, Variables]:
    """Applies a model in train mode; returns logits and the new model state.

    BatchNorm uses batch statistics and its running averages are updated
    (``mutable=['batch_stats']``) when ``variables`` has ``'batch_stats'``;
    ``rng`` is passed as the ``'dropout'`` rng (required by models with
    dropout, ignored by the others).

    Args:
      model: A zoo model.
      variables: Its variables.
      x: NHWC input batch.
      rng: PRNG key for dropout, or ``None`` for models without dropout.

    Returns:
      ``(logits, new_model_state)``, where ``new_model_state`` is
      ``{'batch_stats': ...}`` for BatchNorm models and ``{}`` otherwise.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import PreActBlock
      >>> model = PreActBlock(features=8, stride=2)  # a BatchNorm block stands in for a ResNet
      >>> variables = init_model(model, jax.random.key(0), (4, 4, 4))
      >>> x = jnp.arange(128.0).reshape(2, 4, 4, 4) / 128
      >>> out, state = train_apply(model, variables, x, rng=jax.random.key(1))
      >>> out.shape, sorted(state)
      ((2, 2, 2, 8), ['batch_stats'])
      >>> float(state["batch_stats"]["bn1"]["mean"][0]) > 0  # running mean moved off 0
      True
    """
    rngs = {"dropout": rng} if rng is not None else None
    if "batch_stats" in variables:
        logits, new_state = model.apply(
            dict(variables), x, train=True, rngs=rngs, mutable=["batch_stats"]
        )
        return logits, dict(new_state)
    logits = model.apply(dict(variables), x, train=True, rngs=rngs)
    return logits, {}
