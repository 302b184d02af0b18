"""JPEG in JAX: known properties of the DCT and of compression."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import defenses as d

X_GRAY = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
X_RGB = jax.random.uniform(jax.random.key(1), (2, 13, 19, 3))  # sides not multiples of 8


def test_dct_is_orthonormal_and_dc_is_mean():
    m = d.dct_matrix(8)
    np.testing.assert_allclose(m @ m.T, np.eye(8), atol=1e-6)
    block = np.full((8, 8), 3.0, np.float32)
    coefficients = m @ block @ m.T
    assert abs(coefficients[0, 0] - 3.0 * 8) < 1e-4
    assert np.abs(coefficients.reshape(-1)[1:]).max() < 1e-4


def test_quantization_tables():
    luma50, chroma50 = d.quantization_tables(50)
    assert luma50[0, 0] == 16 and chroma50[0, 0] == 17
    assert np.all(d.quantization_tables(100)[0] == 1)
    assert np.all(d.quantization_tables(10)[0] >= luma50)


@pytest.mark.parametrize("x", [X_GRAY, X_RGB], ids=["gray", "rgb"])
def test_quality_100_is_near_identity_and_lower_quality_loses_more(x):
    errors = [float(jnp.abs(d.jpeg_compress(x, q) - x).mean()) for q in (100, 75, 25, 5)]
    assert errors[0] < 3 / 255
    assert errors == sorted(errors)


@pytest.mark.parametrize("x", [X_GRAY, X_RGB], ids=["gray", "rgb"])
def test_recompression_is_nearly_idempotent(x):
    once = d.jpeg_compress(x, 50)
    twice = d.jpeg_compress(once, 50)
    assert float(jnp.abs(twice - once).mean()) < 0.25 * float(jnp.abs(once - x).mean())


def test_output_is_8bit_and_in_range():
    out = np.asarray(d.jpeg_compress(X_RGB, 60))
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-3)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == X_RGB.shape


def test_smooth_images_survive_compression():
    ramp = jnp.tile(jnp.linspace(0, 1, 16)[None, None, :, None], (1, 16, 1, 1))
    assert float(jnp.abs(d.jpeg_compress(ramp, 50) - ramp).max()) < 0.05


def test_cubic_rounding_approximates_and_differentiates():
    exact = d.jpeg_compress(X_GRAY, 50)
    cubic = d.jpeg_compress(X_GRAY, 50, rounding="cubic")
    unrounded = d.jpeg_compress(X_GRAY, 50, rounding="identity")
    assert float(jnp.abs(exact - cubic).mean()) < float(jnp.abs(exact - unrounded).mean())
    g = jax.grad(lambda x: d.jpeg_compress(x, 50, rounding="cubic").sum())(X_GRAY)
    assert float(jnp.abs(g).mean()) > 0.1
    # The preprocessor's BPDA gradient is the cubic approximation's.
    g_bpda = jax.grad(lambda x: d.jpeg(50).bpda()(x).sum())(X_GRAY)
    np.testing.assert_allclose(g_bpda, g, rtol=1e-4, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="rounding"):
        d.jpeg_compress(X_GRAY, 50, rounding="floor")
    with pytest.raises(ValueError, match="1 or 3"):
        d.jpeg_compress(jnp.zeros((1, 8, 8, 2)), 50)
