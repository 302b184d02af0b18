"""The named steps of APGD, Square, FAB, DeepFool and HopSkipJump, each tested on its own."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A
from advjax.attacks._apgd import (
    APGDState,
    checkpoint_reduce,
    l1_checkpoint_step,
    momentum_step,
    track_best,
)
from advjax.attacks._deepfool import l2_deepfool_step, linf_deepfool_step
from advjax.attacks._fab import (
    FABState,
    fab_keep_best,
    fab_step,
    l2_hyperplane_step,
    linf_hyperplane_step,
)
from advjax.attacks._hopskipjump import boundary_search, estimate_boundary_normal, geometric_step
from advjax.attacks._square import (
    SquareContext,
    SquareState,
    l2_square_init,
    l2_square_update,
    linf_square_update,
    sample_window,
    square_accept,
    square_side,
)

KEY = jax.random.key(0)


# --- APGD -------------------------------------------------------------------------------


def test_checkpoint_rule_halves_exactly_when_the_papers_conditions_hold():
    """Croce & Hein 2020, Sec. 3.2: halve at a checkpoint iff (1) or (2)."""
    window, rho = 10, 0.75
    cases = list(
        itertools.product(
            [False, True],  # checkpoint
            range(0, 11),  # increases in the window
            [False, True],  # halved at the last checkpoint
            [0.5, 1.0, 2.0],  # best loss at the last checkpoint (now: 1.0)
        )
    )
    check = jnp.array([c[0] for c in cases])
    increases = jnp.array([c[1] for c in cases])
    reduced_last = jnp.array([c[2] for c in cases])
    loss_best_last = jnp.array([c[3] for c in cases])
    got = checkpoint_reduce(
        check, increases, window, rho, reduced_last, loss_best_last, jnp.ones(len(cases))
    )
    for (is_check, inc, halved, last), out in zip(cases, np.asarray(got), strict=True):
        condition_1 = inc <= rho * window  # too few increases: oscillating
        condition_2 = (not halved) and last >= 1.0  # not halved before and no progress
        assert bool(out) == (is_check and (condition_1 or condition_2)), (is_check, inc, halved)


def test_momentum_step_is_pgd_at_full_weight_and_extrapolates_otherwise():
    x, prev, z = jnp.array([1.0, 2.0]), jnp.array([0.0, 3.0]), jnp.array([2.0, 2.5])
    np.testing.assert_array_equal(np.asarray(momentum_step(x, prev, z, 1.0)), np.asarray(z))
    out = momentum_step(x, prev, z, 0.75)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x + 0.75 * (z - x) + 0.25 * (x - prev)))


def test_l1_checkpoint_step_resets_when_sparser_and_shrinks_otherwise():
    step, sparser = l1_checkpoint_step(
        jnp.array([0.2, 0.3, 0.11]),
        jnp.array([94.0, 96.0, 96.0]),
        jnp.array([100.0, 100.0, 100.0]),
        1.0,
    )
    assert sparser.tolist() == [True, False, False]
    np.testing.assert_allclose(np.asarray(step), [1.0, 0.2, 0.1], rtol=1e-6)  # floor at 1/10


def _apgd_state(batch=3, loss=0.0):
    zeros = jnp.zeros((batch, 2))
    vec = jnp.full(batch, loss)
    no = jnp.zeros(batch, bool)
    counts = jnp.zeros(batch, jnp.int32)
    return APGDState(
        jnp.asarray(0), zeros, zeros, zeros, vec, vec, counts, vec, zeros, zeros, vec, no,
        zeros, no, vec, vec,
    )  # fmt: skip


def test_track_best_keeps_the_first_success_and_the_best_loss():
    state = _apgd_state()
    first = jnp.ones((3, 2))
    state = track_best(state, first, jnp.array([1.0, -1.0, 0.0]), jnp.array([True, False, False]),
                       first)  # fmt: skip
    second = 2 * jnp.ones((3, 2))
    state = track_best(state, second, jnp.array([0.5, 2.0, 0.0]), jnp.array([True, True, False]),
                       second)  # fmt: skip
    assert np.asarray(state.best_adv)[:, 0].tolist() == [1.0, 2.0, 0.0]  # the first success
    assert np.asarray(state.x_best)[:, 0].tolist() == [1.0, 2.0, 0.0]  # strict improvements only
    assert state.increases.tolist() == [1, 1, 0]
    assert state.found.tolist() == [True, True, False] and int(state.i) == 2
    np.testing.assert_array_equal(np.asarray(state.x_prev), np.asarray(first))


# --- Square -----------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1, 2, 5, 7])
def test_square_windows_are_whole_and_inside_the_image(side):
    rows, cols = jnp.arange(7)[None, :, None, None], jnp.arange(9)[None, None, :, None]
    for seed in range(5):
        keys = jax.random.split(jax.random.key(seed), 2)
        r, c, inside = sample_window(keys[0], keys[1], side, rows, cols, batch=4)
        assert np.asarray(inside.sum((1, 2, 3))).tolist() == [side * side] * 4
        assert bool(jnp.all(jnp.where(inside, (r >= 0) & (r < side) & (c >= 0) & (c < side), True)))


def test_square_side_shrinks_on_the_schedule_and_stays_in_range():
    sides = [int(square_side(i, 1000, 0.8, 16, 16)) for i in range(1000)]
    assert sides[0] == 14 and sides[-1] >= 1
    assert all(a >= b for a, b in zip(sides, sides[1:], strict=False))
    assert max(sides) <= 15


def _ctx(xi, eps, threat, queries=100, p_init=0.3):
    def project(candidate):
        return A.project_to_threat(threat, xi, candidate, eps, 0.0, 1.0)

    return SquareContext(xi, eps, queries, p_init, 0.0, 1.0, project)


def test_linf_square_update_redraws_one_window_at_the_corners():
    xi = jax.random.uniform(KEY, (3, 8, 8, 2), minval=0.2, maxval=0.8)
    x_best = xi + 0.01
    ctx = _ctx(xi, 0.1, A.linf)
    out = linf_square_update(ctx, jax.random.key(5), 0, x_best)
    changed = np.asarray(jnp.any(out != x_best, axis=-1))
    side = int(square_side(0, 100, 0.3, 8, 8))
    for example in range(3):
        rows, cols = np.nonzero(changed[example])
        assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    moved = np.asarray(jnp.abs(out - xi))[np.broadcast_to(changed[..., None], out.shape)]
    np.testing.assert_allclose(moved, 0.1, atol=1e-6)


def test_l2_square_update_stays_on_the_sphere():
    xi = jnp.full((4, 10, 10, 3), 0.5)
    ctx = _ctx(xi, 1.0, A.l2)
    x = l2_square_init(ctx, jax.random.key(1))
    for i in range(5):
        x = l2_square_update(ctx, jax.random.fold_in(KEY, i), i, x)
        np.testing.assert_allclose(np.asarray(A.l2.norm(x - xi)), 1.0, rtol=1e-4)


def test_square_accept_only_improves_active_examples():
    state = SquareState(
        jnp.asarray(3),
        jnp.zeros((4, 1, 1, 1)),
        jnp.array([1.0, 1.0, 1.0, 1.0]),
        jnp.array([False, False, False, True]),
        jnp.array([5, 5, 5, 2]),
    )
    value = jnp.array([0.5, 1.5, -0.5, -9.0])
    success = value < 0
    new = square_accept(state, jnp.ones((4, 1, 1, 1)), value, success)
    assert new.x_best.ravel().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert new.best_value.tolist() == [0.5, 1.0, -0.5, 1.0]
    assert new.done.tolist() == [False, False, True, True]
    assert new.used.tolist() == [6, 6, 6, 2] and int(new.i) == 4


# --- FAB and DeepFool ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "step, norm", [(linf_hyperplane_step, A.linf.norm), (l2_hyperplane_step, A.l2.norm)]
)
def test_hyperplane_box_step_is_feasible_and_minimal(step, norm):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    reach = 0.5 * np.abs(np.asarray(w)).sum(-1)  # the most w . delta the box allows
    c = jnp.asarray(rng.uniform(-0.9, 0.9, size=6) * reach, jnp.float32)
    low, high = jnp.full((6, 5), -0.5), jnp.full((6, 5), 0.5)
    delta = step(w, c, low, high)
    np.testing.assert_allclose(np.asarray(jnp.sum(w * delta, -1)), np.asarray(c), atol=1e-5)
    assert bool(jnp.all((delta >= low - 1e-7) & (delta <= high + 1e-7)))
    # No random point of the hyperplane inside the box is smaller.
    size = np.asarray(norm(delta))
    for _ in range(200):
        v = rng.uniform(-0.5, 0.5, size=(6, 5))
        u = np.asarray(w)
        v = v + ((np.asarray(c) - (u * v).sum(-1)) / (u * u).sum(-1))[:, None] * u
        ok = np.all(np.abs(v) <= 0.5, -1)
        bigger = np.asarray(norm(jnp.asarray(v, jnp.float32))) >= size - 1e-5
        assert np.all(bigger | ~ok)


def test_fab_step_lands_on_a_linear_boundary_without_overshoot():
    w = jnp.array([[-1.0, -2.0, 0.5]])
    x0 = jnp.array([[0.3, 0.2, 0.6]])
    g = jnp.array([0.4])  # z_y - z_t at x0; the boundary is g + w . (x - x0) = 0
    for step, norm in [(linf_hyperplane_step, A.linf.norm), (l2_hyperplane_step, A.l2.norm)]:
        x1 = fab_step(w, g, x0, x0, hyperplane_step=step, norm=norm, alpha_max=0.1, eta=1.0,
                      clip_min=0.0, clip_max=1.0)  # fmt: skip
        np.testing.assert_allclose(float(g[0] + jnp.sum(w * (x1 - x0))), 0.0, atol=1e-6)


def test_fab_keep_best_records_smaller_successes_and_steps_back():
    state = FABState(
        jnp.asarray(0), jnp.zeros((3, 1)), jnp.zeros((3, 1)), jnp.array([jnp.inf, 0.5, 0.5])
    )
    new = fab_keep_best(state, jnp.ones((3, 1)), jnp.array([True, True, False]),
                        jnp.array([1.0, 0.2, 0.1]), jnp.zeros((3, 1)), 0.9)  # fmt: skip
    assert new.best_norm.tolist() == [1.0, 0.20000000298023224, 0.5]
    np.testing.assert_allclose(np.asarray(new.xk).ravel(), [0.9, 0.9, 1.0])


@pytest.mark.parametrize("step, dual", [(linf_deepfool_step, 1), (l2_deepfool_step, 2)])
def test_deepfool_step_crosses_the_linearised_boundary_by_the_margin(step, dual):
    w = jnp.array([[3.0, -4.0, 1.0]])
    f = jnp.array([-2.0])
    r = step(f, w, jnp.linalg.norm(w, ord=dual, axis=-1))
    np.testing.assert_allclose(float(jnp.sum(w * r)), 2.0 + 1e-4, rtol=1e-5)


# --- HopSkipJump --------------------------------------------------------------------------


def test_boundary_search_brackets_the_boundary():
    is_adv = lambda v: v.sum(-1) > 1.0  # noqa: E731
    out = boundary_search(is_adv, jnp.zeros((2, 2)), jnp.array([[1.0, 1.0], [2.0, 0.0]]), 12)
    assert bool(jnp.all(is_adv(out)))
    np.testing.assert_allclose(np.asarray(out.sum(-1)), 1.0, atol=2 * 2.0**-12 * 2)


def test_geometric_step_takes_the_largest_adversarial_try():
    many_adv = lambda v: v[..., 0] > 0.5  # noqa: E731
    x_t = jnp.array([[0.6, 0.5], [0.6, 0.5]])
    direction = jnp.array([[-1.0, 0.0], [1.0, 0.0]])
    moved, ok = geometric_step(many_adv, x_t, direction, jnp.array([0.4, 0.4]), 3, 0.0, 1.0)
    # first: 0.4 and 0.2 cross back, 0.1 gives 0.5 (not > 0.5): none; second: 0.4 is fine.
    assert ok.tolist() == [False, True]
    np.testing.assert_allclose(np.asarray(moved[1]), [1.0, 0.5])


def test_boundary_normal_estimate_points_along_the_true_normal():
    normal = jnp.array([1.0, 2.0, -2.0]) / 3.0
    many_adv = lambda v: (v - 0.5) @ normal > 0  # noqa: E731
    u = estimate_boundary_normal(many_adv, KEY, jnp.full((1, 3), 0.5), jnp.array([0.01]), 200,
                                 50, 0.0, 1.0)  # fmt: skip
    assert float(u[0] @ normal) > 0.9
