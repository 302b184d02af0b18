"""Square's L2 update (Andriushchenko et al. 2020) and HopSkipJump's growing probes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from advjax import attacks as A
from advjax.attacks._square import _inverse_square_sums, _unit_meta_pattern

KEY = jax.random.key(0)


def _rectangles(rows: int, cols: int) -> np.ndarray:
    """Concentric rectangles around the centre, ring k adding 1 / (k + 1)^2 (a loop)."""
    out = np.zeros((rows, cols))
    centre_r, centre_c = rows // 2, cols // 2
    for k in range(max(rows // 2, cols // 2) + 1):
        r0, c0 = max(centre_r - k, 0), max(centre_c - k, 0)
        out[r0 : centre_r + k + 1, c0 : centre_c + k + 1] += 1.0 / (k + 1) ** 2
    return out


def _paper_pattern(side: int) -> np.ndarray:
    top, bottom = _rectangles(side // 2, side), -_rectangles(side - side // 2, side)
    halves = [h / np.linalg.norm(h) for h in (top, bottom) if h.size]
    pattern = np.concatenate(halves, 0)
    return pattern / np.linalg.norm(pattern)


def test_meta_pattern_matches_the_papers_construction():
    sums = _inverse_square_sums(11)
    grid = jnp.arange(11)
    pattern = jax.jit(lambda side: _unit_meta_pattern(grid[:, None], grid[None], side, 11, sums))
    for side in (1, 3, 5, 7, 11):
        got = np.asarray(pattern(side))[:side, :side]
        np.testing.assert_allclose(got, _paper_pattern(side), atol=1e-6)


def _logits_fn(x):
    flat = x.reshape(x.shape[0], -1)
    return jnp.tanh(flat @ jax.random.normal(jax.random.key(4), (flat.shape[1], 3))) * 3.0


def test_square_l2_stays_on_the_ball_and_in_range():
    x = jax.random.uniform(jax.random.key(1), (4, 10, 10, 3))
    y = jnp.argmax(_logits_fn(x), -1)
    attack = jax.jit(A.square(1.0, norm="l2", queries=30), static_argnums=0)
    out = attack(_logits_fn, x, y, key=KEY)
    assert float(A.l2.norm(out - x).max()) <= 1.0 + 1e-4
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(out), np.asarray(attack(_logits_fn, x, y, key=KEY)))


def test_hopskipjump_probes_grow_as_sqrt_of_the_iteration():
    x = jnp.full((2, 6), 0.8)
    logits_fn = lambda v: jnp.stack([v.sum(-1) - 3.0, 3.0 - v.sum(-1)], -1)  # noqa: E731
    y = jnp.array([0, 0])
    attack = A.hopskipjump(
        iterations=4, grad_samples=4, init_samples=5, search_steps=3, step_halvings=2
    )
    _, queries = A.hopskipjump(
        iterations=4,
        grad_samples=4,
        init_samples=5,
        search_steps=3,
        step_halvings=2,
        return_queries=True,
    )(logits_fn, x, y, key=KEY)
    probes = sum(int(4 * math.sqrt(t + 1)) for t in range(4))  # 4 + 5 + 6 + 8
    assert probes == 23
    assert list(np.asarray(queries)) == [1 + 5 + 3 + probes + 4 * (2 + 3)] * 2
    out = attack(logits_fn, x, y, key=KEY)
    assert bool(jnp.all(jnp.argmax(logits_fn(out), -1) == 1))


def test_square_windows_start_where_the_authors_code_starts_them():
    # top-left corners uniform over [0, H - s) x [0, W - s) (at least 0), as random_int(0, h - s)
    from advjax.attacks._square import sample_window

    rows, cols = jnp.arange(9)[None, :, None, None], jnp.arange(7)[None, None, :, None]
    for side, top_range, left_range in ((3, 6, 4), (7, 2, 1), (9, 1, 1)):
        keys = jax.random.split(jax.random.key(side), 2)
        r, c, inside = sample_window(keys[0], keys[1], side, rows, cols, batch=4000)
        tops = np.asarray(-r[:, 0, 0, 0])
        lefts = np.asarray(-c[:, 0, 0, 0])
        assert set(tops.tolist()) == set(range(top_range))
        assert set(lefts.tolist()) == set(range(left_range))
        assert np.all(np.asarray(inside).sum((1, 2, 3)) == min(side, 9) * min(side, 7))
