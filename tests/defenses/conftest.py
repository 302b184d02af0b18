"""A tiny softmax-regression MNIST model, trained in about a second, for the defense tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advjax import data


@pytest.fixture(scope="session")
def linear_mnist():
    """``(logits_fn, x_test[2000], y_test[2000])``; trained on the even training images."""
    train_set = data.load_embedded_mnist("train")
    test_set = data.load_embedded_mnist("test")
    # The embedded training set is sorted by class: train on every other image.
    x = jnp.asarray(data.to_device(train_set.images[::2]))
    y = jnp.asarray(train_set.labels[::2].astype(np.int32))
    tx = optax.adam(0.02)

    def logits(w, x):
        return x.reshape(x.shape[0], -1) @ w["w"] + w["b"]

    def loss(w):
        return optax.softmax_cross_entropy_with_integer_labels(logits(w, x), y).mean()

    @jax.jit
    def fit(w):
        def step(carry, _):
            w, opt = carry
            updates, opt = tx.update(jax.grad(loss)(w), opt, w)
            return (optax.apply_updates(w, updates), opt), None

        (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), None, length=150)
        return w

    w = fit({"w": jnp.zeros((784, 10)), "b": jnp.zeros(10)})
    x_test = np.asarray(data.to_device(test_set.images))
    return (lambda x: logits(w, x)), x_test, test_set.labels.astype(np.int32)
