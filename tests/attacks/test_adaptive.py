"""BPDA and EOT transforms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax.attacks import bpda, eot, eot_logits


def test_bpda_forward_is_exact_and_gradient_is_the_approximations():
    approx = lambda x: jnp.sin(x) * 2.0  # noqa: E731
    f = bpda(jnp.round, approx)
    x = jnp.array([0.2, 0.7, 1.4])
    np.testing.assert_array_equal(f(x), jnp.round(x))
    np.testing.assert_allclose(jax.grad(lambda z: (f(z) * x).sum())(x), 2 * jnp.cos(x) * x)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda z: bpda(jnp.round)(z).sum()))(x), 1.0)


def test_bpda_passes_extra_arguments_without_gradient():
    f = bpda(lambda x, k: jnp.round(x + jax.random.uniform(k, x.shape)))
    g = jax.grad(lambda x: f(x, jax.random.key(0)).sum())(jnp.ones(4))
    np.testing.assert_allclose(g, 1.0)


def test_eot_logits_averages_over_draws():
    fn = lambda x, key: x + jax.random.normal(key, x.shape)  # noqa: E731
    x = jnp.zeros((2, 3))
    key = jax.random.key(0)
    manual = jnp.mean(jax.vmap(lambda k: fn(x, k))(jax.random.split(key, 5)), axis=0)
    np.testing.assert_allclose(eot_logits(fn, 5, average="logits")(x, key), manual, rtol=1e-6)
    log_probs = eot_logits(fn, 5)(x, key)
    manual_p = jnp.mean(jax.nn.softmax(jax.vmap(lambda k: fn(x, k))(jax.random.split(key, 5))), 0)
    np.testing.assert_allclose(jnp.exp(log_probs), manual_p, rtol=1e-5)
    # and the gradient is the average of the per-draw gradients
    scale = lambda x, key: x * jax.random.uniform(key, x.shape)  # noqa: E731
    g = jax.grad(lambda z: eot_logits(scale, 7, average="logits")(z, key).sum())(jnp.ones((1, 3)))
    draws = jax.vmap(lambda k: jax.random.uniform(k, (1, 3)))(jax.random.split(key, 7))
    np.testing.assert_allclose(g, draws.mean(0), rtol=1e-5)


def test_eot_attack_runs_compiled_and_follows_the_expected_gradient():
    w = jnp.array([[1.0, -1.0], [1.0, -1.0]])

    def noisy(x, key):  # additive noise: each draw's softmax gradient has the same sign
        return (x + 2.0 * jax.random.normal(key, x.shape)) @ w

    x = jnp.full((16, 2), 0.6)
    y = jnp.zeros(16, jnp.int32)
    key = jax.random.key(0)
    attack = eot(advjax.pgd(eps=0.3, steps=5, random_start=False, keep_best=False), 8)
    x_adv = jax.jit(attack, static_argnums=0)(noisy, x, y, key=key)
    np.testing.assert_allclose(x_adv, 0.3, atol=1e-5)
    # resample=False: exactly the attack on the EOT logits with one fixed set of draws
    fixed = eot(advjax.pgd(eps=0.3, steps=5), 8, resample=False)(noisy, x, y, key=key)
    attack_key, draw_key = jax.random.split(key)
    expected = advjax.pgd(eps=0.3, steps=5)(
        lambda z: eot_logits(noisy, 8)(z, draw_key), x, y, key=attack_key
    )
    np.testing.assert_allclose(fixed, expected, atol=1e-6)


def test_eot_errors():
    with pytest.raises(ValueError, match="n"):
        eot(advjax.pgd(0.1), 0)
    with pytest.raises(ValueError, match="average"):
        eot_logits(lambda x, k: x, 2, average="median")
    with pytest.raises(TypeError):
        bpda(3)
