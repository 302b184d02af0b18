"""FGSM-RS's uniform start: clipped to [0, 1] (CIFAR-10 code) or not (MNIST code of Wong et al.)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import advjax
from advjax.train._fast import _fgsm_unclipped_start

EPS, ALPHA = 0.3, 0.375


def _linear_logits(x):
    """Class 1's cross-entropy grows with every pixel: the input gradient is positive."""
    s = x.reshape(x.shape[0], -1).sum(-1)
    return jnp.stack([s, jnp.zeros_like(s)], axis=-1)


def test_unclipped_start_keeps_the_randomness_on_background_pixels():
    x = jnp.zeros((4, 16, 16, 1))  # background, as most MNIST pixels
    y = jnp.ones(4, jnp.int32)
    key = jax.random.key(0)
    clipped = advjax.fgsm(EPS, random_start=True, step_size=ALPHA)(_linear_logits, x, y, key=key)
    unclipped = _fgsm_unclipped_start(EPS, ALPHA)(_linear_logits, x, y, key=key)
    # a clipped start sits in [0, eps], so one step of alpha > eps always ends at eps
    np.testing.assert_allclose(np.asarray(clipped), EPS, atol=1e-6)
    # from U(-eps, eps), delta0 + alpha ends below eps whenever delta0 < eps - alpha
    u = np.asarray(unclipped)
    assert u.min() >= ALPHA - EPS - 1e-6 and u.max() <= EPS + 1e-6
    below = float(np.mean(u < EPS - 1e-4))
    assert 0.3 < below < 0.45  # expected share (2 * eps - alpha) / (2 * eps) = 0.375


def test_unclipped_start_matches_the_reference_formula():
    w = jax.random.normal(jax.random.key(3), (36, 3))

    def logits_fn(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) - 0.5) @ w

    x = jax.random.uniform(jax.random.key(1), (8, 6, 6, 1))
    x = jnp.where(x < 0.4, 0.0, jnp.where(x > 0.8, 1.0, x))  # pixels on the box edges
    y = jnp.arange(8, dtype=jnp.int32) % 3
    key = jax.random.key(2)
    got = _fgsm_unclipped_start(EPS, ALPHA)(logits_fn, x, y, key=key)
    delta = jax.random.uniform(key, x.shape, x.dtype, -EPS, EPS)  # no clip to the box
    grad = jax.grad(lambda d: advjax.losses.ce(logits_fn(x + d), y).sum())(delta)
    delta = jnp.clip(delta + ALPHA * jnp.sign(grad), -EPS, EPS)
    delta = jnp.maximum(jnp.minimum(1.0 - x, delta), -x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(jnp.clip(x + delta, 0, 1)), atol=1e-6)
