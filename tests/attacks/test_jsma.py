"""JSMA (Papernot et al. 2016): the paper's budget, pairs, the search domain."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A

KEY = jax.random.key(0)
W = jax.random.normal(jax.random.key(3), (64, 4))


def _logits_fn(x):
    return x.reshape(x.shape[0], -1) @ W


def test_default_budget_is_the_papers_14_5_percent():
    x = jnp.zeros((1, 784))
    w = jnp.stack([-jnp.full(784, 1e-3), jnp.full(784, 1e-3)], -1)  # each pixel helps a little
    logits_fn = lambda v: v @ w + jnp.array([1.0, 0.0])  # noqa: E731 - needs 1000 pixels
    x_adv = A.jsma()(logits_fn, x, jnp.array([1]), key=KEY)
    assert int(jnp.sum(x_adv != x)) == 114  # ceil(0.145 * 784 / 2) pairs, as in the paper


@pytest.mark.parametrize("gamma", [0.1, 0.25])
def test_pairs_of_increased_features_within_the_budget(gamma):
    x = jax.random.uniform(jax.random.key(1), (4, 64)) * 0.5
    targets = jnp.argmin(_logits_fn(x), -1)
    x_adv = jax.jit(A.jsma(gamma=gamma), static_argnums=0)(_logits_fn, x, targets, key=KEY)
    changed = np.asarray(jnp.sum(x_adv != x, -1))
    assert np.all(changed <= 2 * math.ceil(gamma * 64 / 2))
    assert np.all(changed % 2 == 0)  # features move in pairs
    assert bool(jnp.all((x_adv == x) | (x_adv == 1.0)))  # theta = 1: changed ones saturate


def test_features_at_the_maximum_are_not_in_the_search_domain():
    """Saturated features would waste iterations: the attack must spend them elsewhere."""
    x = jnp.zeros((1, 8)).at[0, :4].set(1.0)
    w = jnp.stack([-jnp.full(8, 0.1), jnp.full(8, 0.1).at[:4].set(10.0)], -1)
    logits_fn = lambda v: v @ w + jnp.array([100.0, 0.0])  # noqa: E731 - unreachable
    x_adv = A.jsma(gamma=0.5)(logits_fn, x, jnp.array([1]), key=KEY)  # 2 pairs
    np.testing.assert_array_equal(np.asarray(x_adv[0]), np.ones(8))


def test_features_within_one_percent_of_the_end_are_never_moved():
    w = jax.random.normal(jax.random.key(3), (8, 3))

    def logits_fn(x):
        return x @ w

    x = jnp.array([[0.995, 0.2, 0.3, 0.999, 0.1, 0.5, 0.4, 0.991]])
    target = jnp.array([(int(jnp.argmax(logits_fn(x))) + 1) % 3])
    x_adv = A.jsma(gamma=1.0)(logits_fn, x, target, key=jax.random.key(0))
    near_top = np.asarray(x[0] >= 0.99)
    np.testing.assert_array_equal(np.asarray(x_adv[0])[near_top], np.asarray(x[0])[near_top])
