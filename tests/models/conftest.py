"""Shared fixtures for the model-zoo tests.

Parameters are filled with NumPy-generated values instead of ``model.init``:
on CPU, compiling JAX's PRNG kernels for every parameter shape dominates the
runtime (seconds per model), while the tests only need *some* finite weights.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _fill(path, leaf, rng):
    name = jax.tree_util.keystr(path)
    shape = leaf.shape
    if "batch_stats" in name:
        return jnp.ones(shape) if "var" in name else jnp.zeros(shape)
    if name.endswith("['scale']"):
        return jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32)
    if name.endswith("['bias']"):
        return jnp.asarray(rng.normal(0.0, 0.1, shape), jnp.float32)
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
    return jnp.asarray(rng.normal(0.0, math.sqrt(2.0 / fan_in), shape), jnp.float32)


def numpy_init(model, input_shape, seed=0):
    """Variables shaped like ``model.init``'s, filled with NumPy random values."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False)
    )
    rng = np.random.default_rng(seed)
    filled = jax.tree_util.tree_map_with_path(lambda p, leaf: _fill(p, leaf, rng), shapes)
    return dict(filled)


@pytest.fixture
def np_init():
    return numpy_init
