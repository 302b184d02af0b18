"""EAD (advjax/attacks/_ead.py) and the C&W pieces it shares (advjax/attacks/_minnorm.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from advjax import attacks as A
from advjax.attacks._ead import elastic_net_distance, shrinkage_threshold
from advjax.attacks._minnorm import abort_early_check

W = jax.random.normal(jax.random.key(0), (12, 3))


def _logits_fn(x):
    return x.reshape(x.shape[0], -1) @ W


X = jax.random.uniform(jax.random.key(1), (8, 12), minval=0.3, maxval=0.7)
Y = jnp.argmax(_logits_fn(X), -1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    beta=st.floats(0.0, 0.5),
)
def test_shrinkage_threshold_is_the_prox_of_beta_l1_on_the_box(seed, beta):
    # the prox of beta |u - x| on the box, per coordinate: argmin (u - z)^2 / 2 + beta |u - x|
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(1, 50)).astype(np.float32)
    z = (x + rng.normal(scale=0.5, size=x.shape)).astype(np.float32)
    out = np.asarray(shrinkage_threshold(jnp.asarray(z), jnp.asarray(x), beta, 0.0, 1.0))
    grid = np.linspace(0, 1, 20001, dtype=np.float64)[None, :]
    for i in range(x.shape[1]):
        objective = (grid - z[0, i]) ** 2 / 2 + beta * np.abs(grid - x[0, i])
        best = grid[0, np.argmin(objective)]
        assert abs(out[0, i] - best) <= 1e-4


def test_decision_rules_measure_what_they_say():
    d = jnp.array([[0.3, -0.4, 0.0]])
    assert np.isclose(float(elastic_net_distance(d, 0.5, "en")[0]), 0.25 + 0.5 * 0.7)
    assert np.isclose(float(elastic_net_distance(d, 0.5, "l1")[0]), 0.7)


def test_abort_early_stops_only_stalled_examples_at_checks():
    loss, prev = jnp.array([1.0, 0.5]), jnp.array([1.0, 1.0])
    stalled, kept = abort_early_check(False, loss, prev, jnp.array([False, False]))
    assert stalled.tolist() == [False, False] and kept.tolist() == [1.0, 1.0]
    stalled, kept = abort_early_check(True, loss, prev, jnp.array([False, False]))
    assert stalled.tolist() == [True, False] and kept.tolist() == [1.0, 0.5]


def test_ead_breaks_every_point_and_l1_rule_gives_sparser_perturbations():
    en = jax.jit(A.ead(steps=200, binary_search_steps=6, beta=0.05), static_argnums=0)
    l1_rule = jax.jit(
        A.ead(steps=200, binary_search_steps=6, beta=0.05, decision_rule="l1"), static_argnums=0
    )
    x_en = en(_logits_fn, X, Y, key=jax.random.key(0))
    x_l1 = l1_rule(_logits_fn, X, Y, key=jax.random.key(0))
    for x_adv in (x_en, x_l1):
        assert bool(jnp.all(jnp.argmax(_logits_fn(x_adv), -1) != Y))
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    l1_of = lambda x_adv: np.abs(np.asarray(x_adv - X)).sum(-1)  # noqa: E731
    assert np.median(l1_of(x_l1)) <= np.median(l1_of(x_en)) * 1.02
    # EAD's L1 term makes perturbations sparser than C&W's (same search, same steps)
    x_cw = jax.jit(A.cw_l2(steps=200, binary_search_steps=6), static_argnums=0)(
        _logits_fn, X, Y, key=jax.random.key(0)
    )
    nonzero = lambda x_adv: np.sum(np.abs(np.asarray(x_adv - X)) > 1e-4, -1)  # noqa: E731
    assert np.median(nonzero(x_l1)) < np.median(nonzero(x_cw))


def test_ead_with_a_budget_stays_in_the_l1_ball():
    x_adv = A.ead(0.3, steps=50, binary_search_steps=3)(_logits_fn, X, Y, key=jax.random.key(0))
    assert float(jnp.abs(x_adv - X).sum(-1).max()) <= 0.3 + 1e-5


def test_abort_early_changes_little_and_never_breaks_fewer_points_than_it_reports():
    full = A.cw_l2(steps=300, binary_search_steps=4, abort_early=False)
    early = A.cw_l2(steps=300, binary_search_steps=4)
    a = full(_logits_fn, X, Y, key=jax.random.key(0))
    b = early(_logits_fn, X, Y, key=jax.random.key(0))
    broken = lambda x_adv: np.asarray(jnp.argmax(_logits_fn(x_adv), -1) != Y)  # noqa: E731
    assert broken(a).all() and broken(b).all()
    norm = lambda x_adv: np.linalg.norm(np.asarray(x_adv - X), axis=-1)  # noqa: E731
    assert np.median(norm(b)) <= np.median(norm(a)) * 1.05
