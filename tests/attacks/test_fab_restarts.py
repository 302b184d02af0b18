"""FAB's restarts (advjax/attacks/_fab.py): random starts of the authors' radius, best kept."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A
from advjax.attacks._fab import fab_random_start

W1 = jax.random.normal(jax.random.key(0), (16, 24))
W2 = jax.random.normal(jax.random.key(1), (24, 4))


def _logits_fn(x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ W1) @ W2


X = jax.random.uniform(jax.random.key(2), (12, 16))
Y = jnp.argmax(_logits_fn(X), -1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_lose_what_the_first_run_found(norm):
    threat = A.get_threat_model(norm)
    one = A.fab(norm=norm, steps=15, num_targets=None)(_logits_fn, X, Y, key=jax.random.key(0))
    three = jax.jit(A.fab(norm=norm, steps=15, num_targets=None, restarts=3), static_argnums=0)(
        _logits_fn, X, Y, key=jax.random.key(0)
    )
    broken_one = np.asarray(jnp.argmax(_logits_fn(one), -1) != Y)
    broken_three = np.asarray(jnp.argmax(_logits_fn(three), -1) != Y)
    assert np.all(broken_three >= broken_one)
    both = broken_one & broken_three
    size_one, size_three = np.asarray(threat.norm(one - X)), np.asarray(threat.norm(three - X))
    assert np.all(size_three[both] <= size_one[both] + 1e-6)


def test_random_start_has_the_requested_radius_and_stays_in_the_box():
    x0 = jax.random.uniform(jax.random.key(3), (5, 30), minval=0.2, maxval=0.8)
    radius = jnp.linspace(0.01, 0.1, 5)
    for norm in ("linf", "l2"):
        threat = A.get_threat_model(norm)
        start = fab_random_start(jax.random.key(4), x0, radius, threat, 0.0, 1.0)
        np.testing.assert_allclose(np.asarray(threat.norm(start - x0)), radius, rtol=1e-5)
        assert float(start.min()) >= 0.0 and float(start.max()) <= 1.0


def test_restarts_must_be_positive():
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        A.fab(restarts=0)
