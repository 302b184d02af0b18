"""The validation layer around every attack (advjax/attacks/_guard.py): a zero budget."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax.attacks import with_restarts

_W = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)

BUDGETED = {
    "pgd": lambda e: advjax.pgd(e, steps=2),
    "pgd_l2": lambda e: advjax.pgd(e, steps=2, norm="l2"),
    "fgsm": advjax.fgsm,
    "apgd": lambda e: advjax.apgd(e, steps=2),
    "square": lambda e: advjax.square(e, queries=2),
    "fab": lambda e: advjax.fab(e, steps=2, num_targets=None),
    "cw_l2": lambda e: advjax.cw_l2(e, steps=2, binary_search_steps=1),
    "deepfool": lambda e: advjax.deepfool(e, steps=2),
    "ddn": lambda e: advjax.ddn(e, steps=2),
    "restarts": lambda e: with_restarts(advjax.pgd(e, steps=2), 2),
}


def _has_loop(fn, *args) -> bool:
    """Whether the traced program (nested calls included) has a loop."""
    return re.search(r"\b(while|scan)\[", str(jax.make_jaxpr(fn)(*args))) is not None


@pytest.mark.parametrize("name", sorted(BUDGETED))
@pytest.mark.parametrize("zero", [0, 0.0, np.float32(0.0)])
def test_a_zero_budget_returns_the_input_without_running_the_attack(name, zero):
    x = jnp.asarray(np.linspace(0.0, 1.0, 8).reshape(2, 4), jnp.bfloat16)  # box ends included
    y = jnp.array([0, 2])
    attack = BUDGETED[name](zero)

    def call(x, y):
        return attack(lambda v: v @ _W, x, y, key=jax.random.key(0))

    eager, jitted = call(x, y), jax.jit(call)(x, y)
    assert eager.dtype == x.dtype and jitted.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(eager, np.float32), np.asarray(x, np.float32))
    np.testing.assert_array_equal(np.asarray(jitted, np.float32), np.asarray(x, np.float32))
    assert not _has_loop(call, x, y)
    assert _has_loop(
        lambda x, y: BUDGETED[name](0.1)(lambda v: v @ _W, x, y, key=jax.random.key(0)), x, y
    )


def test_per_example_zero_budgets_still_run_and_stay_at_the_input():
    x = jnp.full((2, 4), 0.5)
    y = jnp.array([0, 1])
    attack = advjax.pgd(jnp.zeros(2), steps=2)
    call = lambda x, y: attack(lambda v: v @ _W, x, y, key=jax.random.key(0))  # noqa: E731
    assert _has_loop(call, x, y)
    np.testing.assert_array_equal(np.asarray(call(x, y)), np.asarray(x))


@pytest.mark.parametrize("use_jit", [False, True])
def test_a_zero_budget_still_raises_the_attacks_own_errors(use_jit):
    attack = advjax.apgd(0.0, steps=2, loss="dlr")  # DLR needs 3 classes; this model has 2

    def call(x, y):
        return attack(lambda v: v @ _W[:, :2], x, y, key=jax.random.key(0))

    with pytest.raises(ValueError, match="at least 3 classes"):
        (jax.jit(call) if use_jit else call)(jnp.full((2, 4), 0.5), jnp.array([0, 1]))


@pytest.mark.parametrize(
    "build",
    [
        lambda: advjax.square(0.0, queries=3, return_queries=True),
        lambda: advjax.hopskipjump(
            0.0,
            iterations=1,
            grad_samples=2,
            max_grad_samples=2,
            init_samples=2,
            search_steps=1,
            return_queries=True,
        ),
    ],
)
def test_a_zero_budget_keeps_the_query_counts_of_a_tuple_output(build):
    x, y = jnp.full((2, 4), 0.5), jnp.array([0, 1])
    x_adv, queries = build()(lambda v: v @ _W, x, y, key=jax.random.key(0))
    assert x_adv.shape == x.shape and queries.shape == (2,)
    np.testing.assert_array_equal(np.asarray(x_adv), np.asarray(x))


def test_a_zero_budget_in_a_users_threat_model_still_runs_the_attack():
    from advjax.attacks import ThreatModel

    free_last = jnp.array([1.0, 1.0, 1.0, 0.0])  # its "norm" ignores the last feature
    threat = ThreatModel(
        name="linf_but_last",
        norm=lambda d: jnp.abs(d * free_last).reshape(d.shape[0], -1).max(-1),
        project=lambda d, eps: jnp.where(free_last > 0, jnp.clip(d, -eps, eps), d),
        direction=jnp.sign,
        random_init=lambda key, shape, eps: jnp.zeros(shape),
    )
    w = jnp.array([[0.1, -0.1], [0.1, -0.1], [0.1, -0.1], [1.0, -1.0]])
    attack = advjax.pgd(0.0, steps=5, norm=threat, step_size=0.2, random_start=False)
    x_adv = attack(
        lambda v: v @ w + jnp.array([-0.3, 0.3]),
        jnp.full((1, 4), 0.5),
        jnp.array([0]),
        key=jax.random.key(0),
    )
    np.testing.assert_allclose(np.asarray(x_adv), [[0.5, 0.5, 0.5, 0.0]])  # the free feature moved
