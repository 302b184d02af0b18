"""Bad options and inputs to the attack suite get clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from advjax import attacks as A

X = jnp.full((2, 4, 4, 1), 0.5)
Y = jnp.array([0, 1])
KEY = jax.random.key(0)


def _logits_fn(x):
    return x.reshape(x.shape[0], -1)[:, :5]


FACTORIES = [
    lambda: A.apgd(0.1),
    lambda: A.apgd_t(0.1),
    lambda: A.mifgsm(0.1),
    lambda: A.bim(0.1),
    lambda: A.fab(0.1),
    lambda: A.deepfool(),
    lambda: A.cw_l2(),
    lambda: A.ead(),
    lambda: A.ddn(),
    lambda: A.square(0.1),
    lambda: A.hopskipjump(),
    lambda: A.one_pixel(),
    lambda: A.jsma(),
]


@pytest.mark.parametrize("make", FACTORIES)
def test_inputs_outside_the_range_are_rejected(make):
    with pytest.raises(ValueError, match="outside the declared valid range"):
        make()(_logits_fn, X + 1.0, Y, key=KEY)


@pytest.mark.parametrize("make", FACTORIES)
def test_integer_inputs_are_rejected(make):
    with pytest.raises(TypeError, match="floating point"):
        make()(_logits_fn, jnp.ones((2, 4, 4, 1), jnp.int32), Y, key=KEY)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: A.apgd(-0.1), "eps must be >= 0"),
        (lambda: A.apgd(0.1, steps=0), "steps must be >= 1"),
        (lambda: A.apgd(0.1, rho=2.0), "rho"),
        (lambda: A.apgd(0.1, norm="l7"), "unknown norm"),
        (lambda: A.apgd(0.1, loss="hinge"), "unknown loss"),
        (lambda: A.apgd(0.1, loss="dlr", targeted=True), "apgd_t"),
        (lambda: A.square(0.1, norm="l1"), "square has no update for threat model .l1."),
        (lambda: A.square(0.1, p_init=0.0), "p_init"),
        (lambda: A.square(0.1, loss="dlr"), "unknown loss"),
        (lambda: A.fab(norm="l1"), "fab has no update for threat model .l1."),
        (lambda: A.fab(eta=0.5), "eta"),
        (lambda: A.deepfool(norm="l0"), "deepfool has no update for threat model .l0."),
        (lambda: A.cw_l2(learning_rate=0.0), "learning_rate"),
        (lambda: A.ead(beta=-1.0), "beta >= 0"),
        (lambda: A.ead(decision_rule="l2"), "unknown decision_rule"),
        (lambda: A.ddn(gamma=1.5), "gamma"),
        (lambda: A.jsma(theta=0.0), "theta"),
        (lambda: A.one_pixel(population=2), "population must be >= 4"),
        (lambda: A.mifgsm(0.1, decay=-1.0), "decay"),
        (lambda: A.l1_sparse(0.0), "sparsity"),
        (lambda: A.worst_case([]), "non-empty"),
    ],
)
def test_bad_options(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_unknown_target_rule():
    with pytest.raises(ValueError, match="unknown targets"):
        A.targeted(A.apgd(0.1, targeted=True), "furthest")(_logits_fn, X, Y, key=KEY)


def test_apgd_t_needs_enough_classes():
    with pytest.raises(ValueError, match="num_targets"):
        A.apgd_t(0.1, num_targets=5)(_logits_fn, X, Y, key=KEY)


def test_unknown_keyword_is_rejected():
    with pytest.raises(TypeError):
        A.apgd(0.1, step_size=0.1)
