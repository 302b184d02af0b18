"""Bad input to an attack gets a clear error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax


def _logits_fn(x):
    return x.reshape(x.shape[0], -1)[:, :3]


X = jnp.full((4, 6), 0.5)
Y = jnp.array([0, 1, 2, 0])
KEY = jax.random.key(0)


@pytest.mark.parametrize("factory", [advjax.pgd, advjax.fgsm])
def test_mismatched_batch_sizes(factory):
    with pytest.raises(ValueError, match="batch sizes differ"):
        factory(0.1)(_logits_fn, X, Y[:3], key=KEY)


@pytest.mark.parametrize("factory", [advjax.pgd, advjax.fgsm])
def test_integer_inputs(factory):
    with pytest.raises(TypeError, match="floating point"):
        factory(0.1)(_logits_fn, jnp.zeros((4, 6), jnp.uint8), Y, key=KEY)


def test_nan_inputs():
    with pytest.raises(ValueError, match="NaN"):
        advjax.pgd(0.1)(_logits_fn, X.at[0, 0].set(jnp.nan), Y, key=KEY)


@pytest.mark.parametrize("bad", [255.0, -0.5])
def test_values_outside_the_declared_range(bad):
    with pytest.raises(ValueError, match="outside the declared valid range"):
        advjax.pgd(0.1)(_logits_fn, X.at[1, 2].set(bad), Y, key=KEY)


def test_custom_range_is_accepted():
    x = jnp.full((4, 6), 100.0)
    x_adv = advjax.pgd(1.0, steps=2, clip_min=0.0, clip_max=255.0)(_logits_fn, x, Y, key=KEY)
    assert float(jnp.abs(x_adv - x).max()) <= 1.0 + 1e-5


@pytest.mark.parametrize("factory", [advjax.pgd, advjax.fgsm])
def test_negative_epsilon(factory):
    with pytest.raises(ValueError, match="must be >= 0"):
        factory(-0.1)


def test_negative_epsilon_in_a_sweep():
    with pytest.raises(ValueError, match="must be >= 0"):
        advjax.over_epsilons(lambda e: advjax.pgd(e), np.array([0.1, -0.2]))


@pytest.mark.parametrize("factory", [advjax.pgd, advjax.fgsm])
def test_unknown_norm(factory):
    with pytest.raises(ValueError, match="unknown norm 'l7'"):
        factory(0.1, norm="l7")


@pytest.mark.parametrize("factory", [advjax.pgd, advjax.fgsm])
def test_unknown_loss(factory):
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        factory(0.1, loss="hinge")


def test_bad_steps_and_restarts():
    with pytest.raises(TypeError, match="steps must be an integer"):
        advjax.pgd(0.1, steps=2.5)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        advjax.pgd(0.1, restarts=0)


def test_bad_range():
    with pytest.raises(ValueError, match="clip_min < clip_max"):
        advjax.pgd(0.1, clip_min=1.0, clip_max=0.0)


def test_labels_with_wrong_rank():
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        advjax.pgd(0.1)(_logits_fn, X, Y[:, None], key=KEY)
