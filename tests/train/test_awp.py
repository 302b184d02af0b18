"""Adversarial weight perturbation: the perturbation, the gradient it trains on, warm-up, errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import advjax
from advjax import train
from advjax.train._awp import global_norm

SHAPE = (6, 6, 1)


class TinyBN(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dense on 6x6 images."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(12)(x.reshape(x.shape[0], -1))
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(3)(nn.relu(x))


def _state():
    model = TinyBN()
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    return train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(0.1),
    )


def _batch(n=8):
    x = jax.random.uniform(jax.random.key(1), (n, *SHAPE))
    return x, jnp.arange(n, dtype=jnp.int32) % 3


def _pgd_at():
    return train.pgd_at(lambda e: advjax.pgd(e, steps=3, step_size=e / 2, keep_best=False), 0.3)


def _tree_close(a, b, **kwargs):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), **kwargs)


@settings(max_examples=10, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    gamma=st.floats(1e-4, 0.5),
    seed=st.integers(0, 2**16),
)
def test_weight_perturbation_is_gamma_relative_per_weight_tensor(shape, gamma, seed):
    keys = jax.random.split(jax.random.key(seed), 2)
    w = jax.random.normal(keys[0], tuple(shape))
    g = jax.random.normal(keys[1], tuple(shape))
    v = train.weight_perturbation({"w": w}, {"w": g}, gamma)["w"]
    if len(shape) < 2:
        assert not np.any(np.asarray(v))  # biases and scales are left alone
        return
    np.testing.assert_allclose(
        float(jnp.linalg.norm(v)), gamma * float(jnp.linalg.norm(w)), rtol=1e-4
    )
    # the same direction as the gradient
    cosine = jnp.vdot(v, g) / (jnp.linalg.norm(v) * jnp.linalg.norm(g))
    assert float(cosine) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "make_objective",
    [_pgd_at, lambda: train.trades(0.3, beta=6.0, steps=3, step_size=0.1)],
    ids=["pgd_at", "trades"],
)
def test_awp_trains_on_the_gradient_at_the_perturbed_weights(make_objective, jit):
    base, state, batch, key = make_objective(), _state(), _batch(), jax.random.key(3)
    gamma = 0.02
    objective = train.awp(base, gamma=gamma)

    def grads_of(obj):
        fn = jax.grad(obj, has_aux=True)
        return (jax.jit(fn) if jit else fn)(state.params, state, batch, key)

    got, (metrics, batch_stats) = grads_of(objective)

    # by hand: the same adversarial inputs, one normalised ascent step, the gradient there
    attack_key, loss_key = jax.random.split(key)
    x_adv = base.inputs(state, batch, attack_key)
    ascent, _ = jax.grad(base.loss, has_aux=True)(state.params, state, batch, x_adv, loss_key)
    v = train.weight_perturbation(state.params, ascent, gamma)
    moved = jax.tree.map(jnp.add, state.params, v)
    expected, (_, expected_stats) = jax.grad(base.loss, has_aux=True)(
        moved, state, batch, x_adv, loss_key
    )
    _tree_close(got, expected, rtol=1e-5, atol=1e-6)
    _tree_close(batch_stats, expected_stats, rtol=1e-5, atol=1e-6)
    assert float(metrics["awp_norm"]) == pytest.approx(float(global_norm(v)), rel=1e-5)
    # the perturbation is not nothing: the gradient differs from the unperturbed one
    plain, _ = jax.grad(base, has_aux=True)(state.params, state, batch, key)
    assert (
        max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain), strict=True)
        )
        > 1e-4
    )


def test_awp_warmup_steps_are_plain_steps_then_perturbed():
    base = _pgd_at()
    step_plain = train.make_step(base, jit=False)
    step_awp = train.make_step(train.awp(base, gamma=0.05, warmup_steps=1), jit=False)
    state, batch, key = _state(), _batch(), jax.random.key(5)
    plain_state, plain_metrics = step_plain(state, batch, key)
    awp_state, awp_metrics = step_awp(state, batch, key)
    _tree_close(awp_state.params, plain_state.params, rtol=0, atol=0)
    assert float(awp_metrics["awp_norm"]) == 0.0
    # step 1 is past the warm-up: the update now differs
    plain_next, _ = step_plain(plain_state, batch, key)
    awp_next, metrics = step_awp(awp_state, batch, key)
    assert float(metrics["awp_norm"]) > 0.0
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(awp_next.params), jax.tree.leaves(plain_next.params), strict=True
        )
    )


def test_awp_runs_the_attack_once_per_step():
    """The compiled AWP step holds as many loops as the plain step: no second attack."""
    state, batch, key = _state(), _batch(), jax.random.key(0)

    def loops(objective):
        step = train.make_step(objective, jit=False)
        return jax.jit(step).lower(state, batch, key).as_text().count("stablehlo.while")

    base = _pgd_at()
    assert loops(base) >= 1
    assert loops(train.awp(base)) == loops(base)


def test_awp_rejects_bad_arguments():
    with pytest.raises(TypeError, match="split into its attack and its loss"):
        train.awp(train.standard())
    with pytest.raises(TypeError, match="split into its attack and its loss"):
        train.awp(train.pgd_at(lambda e: advjax.pgd(e, steps=2), 0.3, alternate=True))
    with pytest.raises(ValueError, match="gamma must be > 0"):
        train.awp(_pgd_at(), gamma=0.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        train.awp(_pgd_at(), warmup_steps=-1)
