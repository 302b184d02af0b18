"""Fixtures shared across the test suite: a small MNIST model trained once per session."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from advjax import data, models, train


@pytest.fixture(scope="session")
def mnist_test_batch():
    """256 embedded MNIST test images in [0, 1] and their labels (numpy)."""
    test_set = data.load_embedded_mnist("test")
    x = np.asarray(data.to_device(test_set.images[:256]))
    return x, test_set.labels[:256].astype(np.int32)


@pytest.fixture(scope="session")
def trained_mnist():
    """A FastMNISTNet trained normally (no defense) for 2 epochs: ~97% clean accuracy.

    Returns ``(logits_fn, variables, model)``.
    """
    train_set = data.load_embedded_mnist("train")
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
    )
    result = train.fit(
        state,
        train_set,
        train.make_step(train.standard()),
        epochs=2,
        batch_size=50,
        key=jax.random.key(1),
        progress=False,
    )
    trained = result.state.variables()
    return models.eval_logits_fn(model, trained), trained, model
