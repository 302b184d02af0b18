from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.certify import (
    ABSTAIN,
    binomial_test_two_sided,
    certified_accuracy_at_radii,
    clopper_pearson_lower,
    gaussian_noise_augment,
    sample_counts,
    smooth_certify,
    smooth_predict,
)

W = jnp.array([[1.0, 2.0], [-1.0, 0.0]])
B = jnp.array([0.3, -0.3])


def logits_fn(x):
    return x @ W.T + B


def _true_radius(x):
    w, b = W[0] - W[1], B[0] - B[1]
    return float((w @ x + b) / jnp.linalg.norm(w))  # distance to the boundary


def test_certify_smoothing_linear_radius_matches_closed_form():
    sigma, n, alpha = 0.5, 20_000, 0.001
    x = jnp.array([0.2, 0.1])
    r_true = _true_radius(x)
    p_a = NormalDist().cdf(r_true / sigma)  # Phi(margin / (sigma ||w||))
    c, r = smooth_certify(
        logits_fn, x, sigma=sigma, n=n, alpha=alpha, key=jax.random.PRNGKey(0), batch_size=4096
    )
    assert c == 0
    # radius is a lower confidence bound: below the truth, but within MC accuracy
    p_low = p_a - 5 * np.sqrt(p_a * (1 - p_a) / n)
    assert sigma * NormalDist().inv_cdf(p_low) - 1e-6 <= r <= r_true + 1e-6


def test_certify_smoothing_abstains_on_boundary():
    x = jnp.array([-0.3, 0.0])  # w.x + b = 0
    assert abs(_true_radius(x)) < 1e-6
    pred = smooth_predict(
        logits_fn, x, sigma=0.5, n=2000, alpha=0.001, key=jax.random.PRNGKey(1), batch_size=1000
    )
    assert pred == ABSTAIN
    c, r = smooth_certify(logits_fn, x, sigma=0.5, n=2000, key=jax.random.PRNGKey(2))
    assert c == ABSTAIN and r == 0.0
    far = smooth_predict(
        logits_fn, jnp.array([3.0, 0.0]), sigma=0.5, n=500, alpha=0.001, key=jax.random.PRNGKey(1)
    )
    assert far == 0


def test_certify_smoothing_counts_and_noise():
    counts = sample_counts(
        logits_fn,
        jnp.array([0.2, 0.1]),
        sigma=0.5,
        n=1001,
        key=jax.random.PRNGKey(0),
        batch_size=300,
    )
    assert int(counts.sum()) == 1001
    z = gaussian_noise_augment(jnp.zeros((4000,)), 2.0, jax.random.PRNGKey(0))
    assert abs(float(z.std()) - 2.0) < 0.1


def test_certify_smoothing_statistics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n, a in [(990, 1000, 0.001), (50, 100, 0.05), (99_000, 100_000, 0.001), (3, 10, 0.1)]:
        ref = stats.beta.ppf(a, k, n - k + 1)
        assert abs(clopper_pearson_lower(k, n, a) - ref) < 1e-9
        ref_p = stats.binomtest(max(k, n - k), n, 0.5).pvalue
        assert abs(binomial_test_two_sided(k, n) - ref_p) < 1e-9 * max(1.0, ref_p) + 1e-12


def test_certify_smoothing_accuracy_at_radii():
    acc = certified_accuracy_at_radii([0, 1, -1, 2], [0.5, 1.0, 0.0, 2.0], [0, 1, 1, 0], [0, 0.75])
    np.testing.assert_allclose(acc, [0.5, 0.25])
