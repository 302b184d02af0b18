"""worst_case(..., compact=True): later attacks only see the still-robust examples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax import attacks as A
from advjax.data import bucket_size

W = jax.random.normal(jax.random.key(5), (12, 3))


def _logits_fn(x):
    return (x.reshape(x.shape[0], -1) - 0.5) @ W


X = jax.random.uniform(jax.random.key(1), (10, 12))
Y = jnp.argmax(_logits_fn(X), -1)
KEY = jax.random.key(2)


def _recording(attack, sizes):
    def recorded(logits_fn, x, y, *, key):
        sizes.append(x.shape[0])  # at trace time: the batch the attack compiles for
        return attack(logits_fn, x, y, key=key)

    return recorded


def test_buckets_are_powers_of_two_capped_at_the_batch():
    assert [bucket_size(n, 10) for n in (1, 2, 3, 5, 8, 9, 10)] == [1, 2, 4, 8, 8, 10, 10]


def test_later_attacks_run_on_the_still_robust_examples_only():
    sizes = []
    first = _recording(advjax.fgsm(0.05), sizes)
    second = _recording(A.bim(0.3, steps=3, step_size=0.1), sizes)
    x_adv = A.worst_case([first, second], compact=True)(_logits_fn, X, Y, key=KEY)
    after_first = advjax.fgsm(0.05)(_logits_fn, X, Y, key=jax.random.fold_in(KEY, 0))
    left = int(jnp.sum(jnp.argmax(_logits_fn(after_first), -1) == Y))
    assert 0 < left < X.shape[0]
    assert sizes == [X.shape[0], bucket_size(left, X.shape[0])]
    assert float(jnp.abs(x_adv - X).max()) <= 0.3 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_compact_and_masked_agree_for_per_example_deterministic_attacks():
    attacks = [
        advjax.fgsm(0.02),
        A.bim(0.05, steps=3, step_size=0.02),
        A.bim(0.3, steps=5, step_size=0.1),
    ]
    masked = jax.jit(A.worst_case(attacks), static_argnums=0)(_logits_fn, X, Y, key=KEY)
    compact = A.worst_case(attacks, compact=True)
    out = compact(_logits_fn, X, Y, key=KEY)
    np.testing.assert_allclose(np.asarray(out), np.asarray(masked), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(compact(_logits_fn, X, Y, key=KEY)))


def test_compact_refuses_to_be_traced():
    compact = A.worst_case([advjax.fgsm(0.05)], compact=True)
    with pytest.raises(ValueError, match="cannot be traced"):
        jax.jit(compact, static_argnums=0)(_logits_fn, X, Y, key=KEY)
