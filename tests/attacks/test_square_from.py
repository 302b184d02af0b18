"""Square from given starts: the threat model kept, bad input refused, eager and under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.attacks import square, square_from

W = jax.random.normal(jax.random.key(0), (16, 4))


def _logits_fn(x):
    return x.reshape(x.shape[0], -1) @ W


X = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1))
Y = jnp.argmax(_logits_fn(X), -1)
START = jnp.clip(X + 0.5 * jax.random.normal(jax.random.key(2), X.shape), 0.0, 1.0)
USE = jnp.array([True, False, True, False, True, True])


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_stays_in_the_ball_and_the_box_in_the_input_dtype(jit, dtype):
    run = square_from(0.05, queries=15)
    call = lambda x, s: run(_logits_fn, x, Y, s, USE, key=jax.random.key(3))  # noqa: E731
    out = (jax.jit(call) if jit else call)(X.astype(dtype), START.astype(dtype))
    assert out.dtype == dtype and bool(jnp.all(jnp.isfinite(out)))
    gap = jnp.abs(out.astype(jnp.float32) - X.astype(dtype).astype(jnp.float32))
    assert float(gap.max()) <= 0.05 + 1e-6
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_without_a_start_it_is_square_and_a_non_finite_start_falls_back():
    run = square_from(0.05, queries=15)
    key = jax.random.key(4)
    plain = square(0.05, queries=15)(_logits_fn, X, Y, key=key)
    unused = run(_logits_fn, X, Y, START, jnp.zeros(6, bool), key=key)
    np.testing.assert_array_equal(unused, plain)
    nan_start = START.at[:, 0, 0, 0].set(jnp.nan)
    fell_back = run(_logits_fn, X, Y, nan_start, jnp.ones(6, bool), key=key)
    np.testing.assert_array_equal(fell_back, plain)


@pytest.mark.parametrize(
    ("start", "use", "match"),
    [
        (START[:, :3], USE, "start must have x's shape"),
        (START, USE.astype(jnp.int32), "use must be a bool array"),
        (START, USE[:4], "use must be a bool array"),
    ],
)
def test_bad_starts_are_refused_eagerly_and_under_jit(start, use, match):
    run = square_from(0.05, queries=5)
    with pytest.raises(ValueError, match=match):
        run(_logits_fn, X, Y, start, use, key=jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda s, u: run(_logits_fn, X, Y, s, u, key=jax.random.key(0)))(start, use)


def test_bad_inputs_and_options_are_refused():
    with pytest.raises(ValueError, match="eps"):
        square_from(-0.1)
    with pytest.raises(ValueError, match="p_init"):
        square_from(0.1, p_init=0.0)
    run = square_from(0.05, queries=5)
    with pytest.raises(ValueError):
        run(_logits_fn, X, jnp.full(6, 7), START, USE, key=jax.random.key(0))  # labels >= K


def test_no_gradient_flows_through_the_search_as_with_square():
    run = square_from(0.05, queries=5)

    def total(x):
        return run(_logits_fn, x, Y, START, USE, key=jax.random.key(0)).sum()

    assert float(jnp.abs(jax.grad(total)(X)).max()) == 0.0


def test_an_attack_without_extras_refuses_them_clearly():
    with pytest.raises(TypeError, match="takes \\(logits_fn, x, y, \\*, key\\)"):
        square(0.05, queries=5)(_logits_fn, X, Y, START, key=jax.random.key(0))


def test_per_example_keys_splits_the_starts_too():
    from advjax.attacks import per_example_keys

    run = per_example_keys(square_from(0.05, queries=15))
    keys = jax.random.split(jax.random.key(5), 6)
    both = run(_logits_fn, X, Y, START, USE, key=keys)
    alone = run(_logits_fn, X[2:3], Y[2:3], START[2:3], USE[2:3], key=keys[2:3])
    np.testing.assert_array_equal(both[2:3], alone)


def test_a_zero_budget_returns_the_input_with_starts_given():
    out = square_from(0.0, queries=5)(_logits_fn, X, Y, START, USE, key=jax.random.key(0))
    np.testing.assert_array_equal(out, X)
