"""Preprocessors: shapes, ranges, randomness, BPDA, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import defenses as d

X = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
KEY = jax.random.key(1)

ALL = [
    d.bit_depth(1),
    d.bit_depth(4),
    d.median_smoothing(2),
    d.median_smoothing(3),
    d.gaussian_smoothing(1.0),
    d.gaussian_noise(0.2),
    d.random_resize_pad(0.7),
    d.jpeg(50),
    d.chain(d.jpeg(75), d.gaussian_noise(0.1), d.bit_depth(3)),
]


@pytest.mark.parametrize("p", ALL, ids=lambda p: p.name)
def test_shape_range_and_jit(p):
    out = jax.jit(lambda x, k: p(x, k))(X, KEY)
    assert out.shape == X.shape and out.dtype == X.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # the BPDA version has the same forward values and a finite, non-zero gradient
    exact = p.bpda()
    np.testing.assert_allclose(exact(X, KEY), out, atol=1e-5)
    grad = jax.grad(lambda x: exact(x, KEY).sum())(X)
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).sum()) > 0


def test_bit_depth_levels_and_idempotence():
    out = d.bit_depth(2)(X)
    assert set(np.unique(np.round(np.asarray(out) * 3, 5))) <= {0.0, 1.0, 2.0, 3.0}
    np.testing.assert_array_equal(d.bit_depth(2)(out), out)
    # bit depth's own gradient is zero (masked); BPDA restores the identity's
    assert float(jnp.abs(jax.grad(lambda x: d.bit_depth(2)(x).sum())(X)).sum()) == 0.0
    np.testing.assert_allclose(jax.grad(lambda x: d.bit_depth(2).bpda()(x).sum())(X), 1.0)


def test_median_removes_salt_noise_and_keeps_constants():
    flat = jnp.full((1, 6, 6, 2), 0.3)
    np.testing.assert_allclose(d.median_smoothing(3)(flat), flat, atol=1e-7)
    salted = flat.at[0, 3, 3, 0].set(1.0)
    np.testing.assert_allclose(d.median_smoothing(3)(salted), flat, atol=1e-7)


def test_gaussian_smoothing_preserves_mean_of_constant_and_blurs():
    dot = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    out = d.gaussian_smoothing(1.0)(dot)
    assert float(out.max()) < 0.2 and abs(float(out.sum()) - 1.0) < 1e-4


def test_randomized_need_keys_and_vary():
    for p in (d.gaussian_noise(0.1), d.random_resize_pad(0.8)):
        assert p.randomized
        with pytest.raises(ValueError, match="randomized"):
            p(X)
        assert not np.allclose(p(X, jax.random.key(0)), p(X, jax.random.key(1)))
        np.testing.assert_array_equal(p(X, jax.random.key(3)), p(X, jax.random.key(3)))


def test_random_resize_pad_scale_one_is_identity():
    np.testing.assert_allclose(d.random_resize_pad(1.0)(X, KEY), X, atol=1e-5)


def test_preprocess_defended_logits():
    f = lambda x: x.reshape(x.shape[0], -1)[:, :10]  # noqa: E731
    defended = d.preprocess(f, d.bit_depth(1), d.median_smoothing(2))
    assert not defended.randomized and defended.name.startswith("chain(")
    assert defended(X).shape == (3, 10)
    noisy = d.preprocess(f, d.gaussian_noise(0.1))
    assert noisy.randomized and noisy(X, KEY).shape == (3, 10)
    g = jax.grad(lambda x: defended.adaptive()(x).sum())(X)
    assert float(jnp.abs(g).sum()) > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: d.bit_depth(0), "bits"),
        (lambda: d.bit_depth(17), "bits"),
        (lambda: d.bit_depth(2.5), "bits"),
        (lambda: d.median_smoothing(1), "size"),
        (lambda: d.gaussian_smoothing(0.0), "sigma"),
        (lambda: d.gaussian_smoothing(1.0, size=4), "odd"),
        (lambda: d.gaussian_noise(-1.0), "sigma"),
        (lambda: d.random_resize_pad(0.0), "min_scale"),
        (lambda: d.jpeg(0), "quality"),
        (lambda: d.jpeg(101), "quality"),
        (lambda: d.get_preprocessor("blur"), "unknown preprocessor"),
        (lambda: d.chain(), "at least one"),
        (lambda: d.preprocess(lambda x: x), "at least one"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_spatial_preprocessors_reject_flat_inputs():
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        d.median_smoothing(2)(jnp.zeros((2, 784)))
