"""Differential evolution of the one-pixel attack (advjax/attacks/_onepixel.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import attacks as A
from advjax.attacks._onepixel import (
    binomial_crossover,
    de_scale,
    distinct_partners,
    keep_in_bounds,
)


def test_partners_are_distinct_and_uniform_over_the_allowed_indices():
    r1, r2, r3 = (np.asarray(r) for r in distinct_partners(jax.random.key(0), 400, 6))
    i = np.arange(6)
    assert np.all((r1 != i) & (r2 != i) & (r3 != i) & (r1 != r2) & (r1 != r3) & (r2 != r3))
    for r in (r1, r2, r3):
        for parent in range(6):
            counts = np.bincount(r[:, parent], minlength=6)
            assert counts[parent] == 0
            allowed = np.delete(counts, parent)
            assert allowed.min() > 400 / 5 * 0.6  # each of the 5 others drawn about 80 times


def test_crossover_rate_sets_the_share_of_mutant_genes():
    parents, mutants = jnp.zeros((50, 40, 1, 5)), jnp.ones((50, 40, 1, 5))
    for rate in (0.0, 0.5, 1.0):
        share = float(binomial_crossover(jax.random.key(1), parents, mutants, rate).mean())
        expected = 1.0 if rate == 1.0 else rate + (1 - rate) / 5  # one gene is always taken
        assert abs(share - expected) < 0.03


def test_out_of_bounds_genes_are_redrawn_uniformly_or_clipped():
    low, high = jnp.array([0.0, 0.0, 0.0]), jnp.array([27.999, 27.999, 1.0])
    trials = jnp.broadcast_to(jnp.array([-3.0, 40.0, 0.25]), (4000, 3))
    redrawn = np.asarray(keep_in_bounds(jax.random.key(0), trials, low, high, "resample"))
    assert np.all(redrawn[:, 2] == 0.25)  # inside: kept
    for gene in (0, 1):  # outside: uniform over the range, not piled on an end
        assert redrawn[:, gene].min() >= 0 and redrawn[:, gene].max() <= 27.999
        assert abs(redrawn[:, gene].mean() - 14.0) < 0.5 and np.mean(redrawn[:, gene] < 1) < 0.05
    clipped = np.asarray(keep_in_bounds(None, trials, low, high, "clip"))
    np.testing.assert_array_equal(clipped[0], np.array([0.0, 27.999, 0.25], np.float32))


def test_dithered_scale_is_uniform_in_its_range_and_a_fixed_one_stays():
    draws = np.array([float(de_scale(jax.random.key(i), (0.5, 1.0))) for i in range(400)])
    assert draws.min() >= 0.5 and draws.max() < 1.0
    assert abs(draws.mean() - 0.75) < 0.03 and draws.std() > 0.12  # uniform: std 0.144
    assert de_scale(jax.random.key(0), 0.5) == 0.5


@pytest.mark.parametrize(
    "strategy, crossover, mutation, bounds",
    [("rand1", 1.0, 0.5, "resample"), ("best1", 0.7, (0.5, 1.0), "clip")],
)
def test_one_pixel_changes_at_most_its_pixels_with_every_strategy(
    strategy, crossover, mutation, bounds
):
    w = jax.random.normal(jax.random.key(0), (36, 4))

    def logits_fn(x):
        return x.reshape(x.shape[0], -1) @ w

    x = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1))
    y = jnp.argmax(logits_fn(x), -1)
    attack = A.one_pixel(
        2,
        population=12,
        generations=5,
        strategy=strategy,
        crossover=crossover,
        mutation=mutation,
        out_of_bounds=bounds,
    )
    x_adv = jax.jit(attack, static_argnums=0)(logits_fn, x, y, key=jax.random.key(2))
    assert np.all(np.asarray((x_adv != x).reshape(3, -1).sum(-1)) <= 2)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_bad_differential_evolution_options():
    with pytest.raises(ValueError, match="crossover"):
        A.one_pixel(crossover=1.5)
    with pytest.raises(ValueError, match="unknown strategy"):
        A.one_pixel(strategy="current-to-best")
    for mutation in (0.0, 2.5, (1.0, 0.5), (0.5, 3.0), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="mutation"):
            A.one_pixel(mutation=mutation)
    with pytest.raises(ValueError, match="out_of_bounds"):
        A.one_pixel(out_of_bounds="reflect")
