"""advjax/_compile.py: programs built once per model, and bound functions compiled when eager."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import certify
from advjax._compile import compiled_when_concrete

W1 = jax.random.normal(jax.random.key(0), (6, 4))
W2 = jax.random.normal(jax.random.key(1), (3, 6))


def _net(x):
    return W2 @ jax.nn.relu(W1 @ x - 0.1)


def test_a_concrete_call_runs_one_program_and_a_traced_call_inlines():
    traces = []

    def fn(x):
        traces.append(isinstance(x, jax.core.Tracer))
        return 2 * x

    call = compiled_when_concrete(fn)
    np.testing.assert_array_equal(call(jnp.ones(3)), 2 * jnp.ones(3))
    np.testing.assert_array_equal(call(jnp.zeros(3)), jnp.zeros(3))
    assert traces == [True]  # traced once by its own jit, then the compiled program ran
    assert jax.grad(lambda v: call(v).sum())(jnp.ones(3)).tolist() == [2.0, 2.0, 2.0]
    assert jax.vmap(call)(jnp.ones((2, 3))).shape == (2, 3)


@pytest.mark.parametrize(
    "bounds", [certify.interval_bounds, certify.crown_bounds, certify.crown_ibp_bounds]
)
def test_compiled_bounds_equal_the_interpreter_run_op_by_op_and_stay_sound(bounds):
    x = jax.random.uniform(jax.random.key(2), (4,))
    lo, hi = x - 0.2, x + 0.2
    eager = bounds(_net)(lo, hi)
    with jax.disable_jit():  # the interpreter dispatched equation by equation, as before
        interpreted = bounds(_net)(lo, hi)
    for a, b in zip(eager, interpreted, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    samples = jax.random.uniform(jax.random.key(3), (2000, 4), minval=lo, maxval=hi)
    values = jax.vmap(_net)(samples)
    assert np.all(np.asarray(values) >= np.asarray(eager[0]) - 1e-5)
    assert np.all(np.asarray(values) <= np.asarray(eager[1]) + 1e-5)


def test_an_unsupported_operation_is_the_same_clear_error_eagerly():
    with pytest.raises(certify.UnsupportedPrimitiveError, match="sort"):
        certify.crown_bounds(lambda x: jnp.sort(x))(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        certify.interval_bounds(_net)(jnp.zeros(4), jnp.ones(5))
