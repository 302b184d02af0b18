"""Invariants of the attack suite on a tiny model: threat model, range, determinism, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import advjax
from advjax import attacks as A

TOL = 1e-5
W = jax.random.normal(jax.random.key(42), (16, 5))


def _logits_fn(x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ W) * 4.0 + x.reshape(x.shape[0], -1)[:, :5]


X = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1))
Y = jnp.argmax(_logits_fn(X), -1)
KEY = jax.random.key(3)

# name -> (attack, norm or None (unbounded min-norm), budget, labels are targets)
BOUNDED = {
    "apgd_ce": (A.apgd(0.1, steps=6), "linf", 0.1),
    "apgd_dlr_l2": (A.apgd(0.5, norm="l2", loss="dlr", steps=6), "l2", 0.5),
    "apgd_l1": (A.apgd(2.0, norm="l1", steps=6), "l1", 2.0),
    "apgd_t": (A.apgd_t(0.1, steps=4, num_targets=2), "linf", 0.1),
    "bim": (A.bim(0.05), "linf", 0.05),
    "mifgsm_l2": (A.mifgsm(0.5, norm="l2", steps=4), "l2", 0.5),
    "fab_t": (A.fab(0.1, steps=5, num_targets=2), "linf", 0.1),
    "deepfool_eps": (A.deepfool(0.3, steps=5), "l2", 0.3),
    "square": (A.square(0.1, queries=15), "linf", 0.1),
    "square_l2": (A.square(0.5, norm="l2", queries=15), "l2", 0.5),
    "cw_eps": (A.cw_l2(0.5, steps=5, binary_search_steps=2), "l2", 0.5),
    "ead_eps": (A.ead(2.0, steps=5, binary_search_steps=2), "l1", 2.0),
    "ddn_eps": (A.ddn(0.5, steps=5), "l2", 0.5),
    "hsj_eps": (A.hopskipjump(0.5, iterations=2, grad_samples=4, init_samples=8), "l2", 0.5),
    "one_pixel": (A.one_pixel(2, population=6, generations=3), "pixels", 2),
    "worst_case": (A.worst_case([advjax.fgsm(0.1), A.apgd(0.1, steps=3)]), "linf", 0.1),
    "early_stop": (A.early_stop(A.mifgsm(0.1, steps=3)), "linf", 0.1),
    "targeted": (A.targeted(A.apgd(0.1, steps=3, targeted=True), "second"), "linf", 0.1),
}
UNBOUNDED = {
    "deepfool_linf": A.deepfool(norm="linf", steps=5),
    "fab_l2": A.fab(norm="l2", steps=5, num_targets=None),
    "cw": A.cw_l2(steps=5, binary_search_steps=2),
    "ead": A.ead(steps=5, binary_search_steps=2),
    "ddn": A.ddn(steps=5),
    "jsma": A.jsma(gamma=0.25),
}


def _size(norm, delta):
    if norm == "pixels":
        return jnp.sum(jnp.any(delta != 0, axis=-1).reshape(delta.shape[0], -1), -1)
    return A.get_threat_model(norm).norm(delta)


# Compiling every attack (and running it op by op) takes minutes on a shared 2-core
# machine: the default run covers a cheap subset, the rest runs with -m slow.
FAST = {"apgd_ce", "bim", "ddn_eps", "deepfool_eps", "early_stop", "fab_t", "mifgsm_l2"}
EAGER = {"bim", "ddn_eps", "mifgsm_l2"}


def _params(names, fast):
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in sorted(names)]


@pytest.mark.parametrize("name", _params(BOUNDED, FAST))
def test_bounded_attacks_stay_in_ball_range_and_are_deterministic(name):
    attack, norm, eps = BOUNDED[name]
    jitted = jax.jit(attack, static_argnums=0)(_logits_fn, X, Y, key=KEY)
    again = jax.jit(attack, static_argnums=0)(_logits_fn, X, Y, key=KEY)
    assert jitted.shape == X.shape
    assert float(jnp.max(_size(norm, jitted - X))) <= eps * (1 + TOL) + TOL
    assert float(jitted.min()) >= 0.0 and float(jitted.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(again))  # deterministic


@pytest.mark.parametrize("name", _params(BOUNDED, EAGER))
def test_bounded_attacks_agree_with_and_without_jit(name):
    attack, norm, eps = BOUNDED[name]
    eager = attack(_logits_fn, X, Y, key=KEY)
    jitted = jax.jit(attack, static_argnums=0)(_logits_fn, X, Y, key=KEY)
    assert float(jnp.max(_size(norm, eager - X))) <= eps * (1 + TOL) + TOL
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-4)


@pytest.mark.parametrize("name", _params(UNBOUNDED, {"jsma", "cw"}))
def test_min_norm_attacks_stay_in_range_and_agree_under_jit(name):
    attack = UNBOUNDED[name]
    y = (Y + 1) % 5 if name == "jsma" else Y
    eager = attack(_logits_fn, X, y, key=KEY)
    jitted = jax.jit(attack, static_argnums=0)(_logits_fn, X, y, key=KEY)
    assert float(eager.min()) >= 0.0 and float(eager.max()) <= 1.0
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-4)


@pytest.mark.slow
def test_black_box_attacks_report_queries():
    _, queries = A.square(0.1, queries=15, return_queries=True)(_logits_fn, X, Y, key=KEY)
    assert queries.shape == (6,) and int(queries.max()) <= 15 + 2 and int(queries.min()) >= 1
    _, q = A.one_pixel(population=6, generations=3, return_queries=True)(_logits_fn, X, Y, key=KEY)
    assert int(q.max()) <= 1 + 6 * 4


def _l1_reference(v, eps, low, high):
    """Bisection on lambda in float64: the projection onto the L1 ball ∩ box."""
    cap = np.where(v >= 0, high, -low)

    def shrink(lam):
        return np.sign(v) * np.clip(np.abs(v) - lam, 0.0, cap)

    if np.abs(shrink(0.0)).sum() <= eps:
        return shrink(0.0)
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.abs(shrink(mid)).sum() > eps else (lo, mid)
    return shrink(hi)


_L1_PROJECT = jax.jit(A.l1.box_project)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), eps=st.floats(0.0, 6.0), scale=st.floats(0.1, 3.0))
def test_l1_box_projection_is_exact(seed, eps, scale):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (2, 12))
    v = rng.normal(size=(2, 12)) * scale
    low, high = -x, 1 - x
    got = np.asarray(_L1_PROJECT(jnp.asarray(v, jnp.float32), eps, low, high))
    for row in range(2):
        want = _l1_reference(v[row], eps, low[row], high[row])
        np.testing.assert_allclose(got[row], want, atol=2e-4)
        assert np.abs(got[row]).sum() <= eps + 1e-4
        assert np.all(x[row] + got[row] >= -1e-6) and np.all(x[row] + got[row] <= 1 + 1e-6)


def test_l1_sparse_steps_are_sparse_and_l0_projection_counts():
    grad = jax.random.normal(KEY, (2, 100))
    step = A.l1_sparse(0.05).direction(grad)
    assert int(jnp.sum(step[0] != 0)) == 5
    np.testing.assert_allclose(np.asarray(jnp.abs(step).sum(-1)), 1.0, rtol=1e-6)
    kept = A.l0.project(grad, 3)
    assert list(np.asarray(A.l0.norm(kept))) == [3, 3]


def test_apgd_checkpoints_follow_the_paper():
    is_check, window = A.checkpoint_schedule(100)
    assert list(np.flatnonzero(is_check) + 1) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert list(window[is_check]) == [22, 19, 16, 13, 10, 7, 6, 6]


def test_universal_perturbation_is_in_ball_and_jittable():
    v = A.universal_perturbation(_logits_fn, X, Y, eps=0.1, key=KEY, batch_size=3, epochs=2)
    assert v.shape == X.shape[1:] and float(jnp.abs(v).max()) <= 0.1 + TOL
    out = jax.jit(A.apply_universal(v), static_argnums=0)(_logits_fn, X, Y, key=KEY)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
