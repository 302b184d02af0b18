"""random_crop_flip: every output is a shifted window of the zero-padded image, maybe mirrored."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import data


def _windows(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every crop of the padded image, and its mirror: what an augmented image may be."""
    height, width, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    crops = [
        padded[i : i + height, j : j + width]
        for i in range(2 * padding + 1)
        for j in range(2 * padding + 1)
    ]
    return crops + [c[:, ::-1] for c in crops]


@pytest.mark.parametrize("jit", [False, True])
def test_outputs_are_padded_crops_or_their_mirrors(jit):
    x = jax.random.uniform(jax.random.key(0), (16, 6, 5, 3))
    augment = (
        jax.jit(data.random_crop_flip, static_argnames="padding") if jit else data.random_crop_flip
    )
    out = np.asarray(augment(x, jax.random.key(1), padding=2))
    assert out.shape == x.shape and out.dtype == np.float32
    for image, result in zip(np.asarray(x), out, strict=True):
        assert any(np.array_equal(result, w) for w in _windows(image, 2))
    # examples draw their own shifts and flips, and the same key gives the same batch
    assert len({r.tobytes() for r in out}) == 16
    np.testing.assert_array_equal(out, augment(x, jax.random.key(1), padding=2))
    assert not np.array_equal(out, augment(x, jax.random.key(2), padding=2))


def test_over_many_draws_every_shift_and_both_flips_occur():
    x = jnp.arange(4 * 4, dtype=jnp.float32).reshape(1, 4, 4, 1) + 1.0
    seen = set()
    for seed in range(200):
        out = np.asarray(data.random_crop_flip(x, jax.random.key(seed), padding=1))[0]
        seen.add(out.tobytes())
    assert len(seen) == len({w.tobytes() for w in _windows(np.asarray(x[0]), 1)}) == 18


def test_bad_shapes_and_paddings_are_clear_errors():
    with pytest.raises(ValueError, match=r"needs images \[B, H, W, C\]"):
        data.random_crop_flip(jnp.zeros((4, 4, 3)), jax.random.key(0))
    with pytest.raises(ValueError, match="padding must be >= 1"):
        data.random_crop_flip(jnp.zeros((1, 4, 4, 3)), jax.random.key(0), padding=0)
