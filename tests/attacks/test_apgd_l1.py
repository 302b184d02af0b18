"""l1-APGD (Croce & Hein 2021): sparse steps with adaptive sparsity, the budget schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A
from advjax.attacks._apgd import l1_checkpoint_schedule
from advjax.attacks._threat import sparse_l1_direction

W = jax.random.normal(jax.random.key(7), (16, 5))


def _logits_fn(x):
    flat = x.reshape(x.shape[0], -1)
    return jnp.tanh(flat @ W) * 4.0 + flat[:, :5]


X = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1))
Y = jnp.argmax(_logits_fn(X), -1)
KEY = jax.random.key(3)


def test_sparse_direction_keeps_each_examples_share_of_coordinates():
    grad = jax.random.normal(KEY, (3, 100))
    step = sparse_l1_direction(grad, jnp.array([0.05, 0.2, 1.0]))
    assert list(np.asarray(jnp.sum(step != 0, -1))) == [5, 20, 100]
    np.testing.assert_allclose(np.asarray(jnp.abs(step).sum(-1)), 1.0, rtol=1e-6)
    top = jnp.argsort(-jnp.abs(grad[0]))[:5]
    np.testing.assert_array_equal(np.sign(step[0, top]), np.sign(grad[0, top]))
    assert float(jnp.abs(sparse_l1_direction(jnp.zeros((1, 4)), 0.5)).sum()) == 0.0


def test_l1_checkpoints_every_four_percent():
    assert list(np.flatnonzero(l1_checkpoint_schedule(100)) + 1) == list(range(4, 101, 4))
    assert l1_checkpoint_schedule(10).all()  # fewer than 25 iterations: every iteration


@pytest.mark.parametrize("eps_schedule", [True, False])
def test_l1_apgd_stays_in_ball_and_box_deterministic_and_jit_agrees(eps_schedule):
    attack = A.apgd(2.0, norm="l1", steps=8, eps_schedule=eps_schedule)
    jitted = jax.jit(attack, static_argnums=0)
    out = jitted(_logits_fn, X, Y, key=KEY)
    again = jitted(_logits_fn, X, Y, key=KEY)
    assert float(A.l1.norm(out - X).max()) <= 2.0 * (1 + 1e-5)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(out), np.asarray(again))
    if eps_schedule:  # the default for L1; eager runs compile op by op, so only once
        eager = attack(_logits_fn, X, Y, key=KEY)
        np.testing.assert_allclose(np.asarray(eager), np.asarray(out), atol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_l1_schedule_with_an_empty_last_stage_still_ends_in_the_ball(steps):
    out = A.apgd(1.0, norm="l1", steps=steps)(_logits_fn, X, Y, key=KEY)
    assert float(A.l1.norm(out - X).max()) <= 1.0 * (1 + 1e-5)


def test_l1_apgd_t_with_schedule_stays_in_ball():
    out = A.apgd_t(1.5, norm="l1", steps=6, num_targets=2)(_logits_fn, X, Y, key=KEY)
    assert float(A.l1.norm(out - X).max()) <= 1.5 * (1 + 1e-5)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_eps_schedule_is_l1_only():
    with pytest.raises(ValueError, match="L1 threat model only"):
        A.apgd(0.1, norm="linf", eps_schedule=True)
    with pytest.raises(ValueError, match="L1 threat model only"):
        A.apgd_t(0.1, norm="l2", eps_schedule=True)


def test_l1_apgd_breaks_a_linear_model_with_a_sparse_perturbation():
    """On a linear model, the best L1 move is a few coordinates with the largest weights."""
    w = jnp.zeros((64, 2)).at[:, 0].set(jnp.linspace(-1.0, 1.0, 64))
    logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w  # noqa: E731
    x = jnp.full((4, 64), 0.5)
    x = x.at[:, -1].set(0.9)  # z_0 = 0.4 > z_1 = 0: an L1 move of 0.4 flips it
    y = jnp.zeros(4, jnp.int32)
    out = jax.jit(A.apgd(0.6, norm="l1", steps=20), static_argnums=0)(logits_fn, x, y, key=KEY)
    assert bool(jnp.all(jnp.argmax(logits_fn(out), -1) == 1))
    assert int(jnp.max(jnp.sum(out != x, -1))) <= 16
