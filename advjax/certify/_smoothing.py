"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918).

"Certified Adversarial Robustness via Randomized Smoothing". The smoothed
classifier is ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)``.
Noise samples are drawn and classified on device in fixed-size chunks under
``lax.fori_loop``; the hypothesis tests (two-sided binomial test, one-sided
Clopper-Pearson bound) run on the host in float64 with a self-contained
regularised incomplete beta function (no SciPy dependency).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import check_batch, check_classes, check_positive_int
from advjax._compile import per_model
from advjax.attacks import predicted_class

__all__ = [
    "ABSTAIN",
    "gaussian_noise_augment",
    "sample_counts",
    "smooth_predict",
    "smooth_certify",
    "clopper_pearson_lower",
    "binomial_test_two_sided",
    "certified_accuracy_at_radii",
]

ABSTAIN = -1
"""Class returned when the smoothed classifier abstains."""


def gaussian_noise_augment(x, sigma: float, key):
    """Adds isotropic Gaussian noise ``N(0, sigma^2 I)`` (training augmentation).

    Args:
        x: Array of inputs.
        sigma: Noise standard deviation.
        key: PRNG key.

    Returns:
        ``x + sigma * noise`` with the dtype of ``x``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> gaussian_noise_augment(jnp.zeros(3), 0.0, jax.random.PRNGKey(0)).tolist()
        [0.0, 0.0, 0.0]
    """
    x = jnp.asarray(x)
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def check_smoothing_inputs(logits_fn, x, sigma) -> None:
    """The validation layer for smoothing: one finite input, a finite ``sigma > 0``, a classifier.

    Raises:
      TypeError: for a non-floating input.
      ValueError: for a non-positive or non-finite ``sigma``, or a model that does
        not return ``[B, K]`` logits with ``K >= 2``.
      InvalidInputError: for NaN/inf values in ``x``.
    """
    if not (np.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a finite noise level > 0, got {sigma!r}.")
    num_classes = check_batch(logits_fn, x[None], jnp.zeros(1, jnp.int32))
    check_classes(num_classes, 2, "randomized smoothing")


def _check_alpha(alpha) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")


def sample_counts(logits_fn: Callable, x, *, sigma: float, n: int, key, batch_size: int = 1000):
    """Counts the base classifier's predictions on ``n`` noisy copies of ``x``.

    Args:
        logits_fn: Batched classifier ``x[B, ...] -> logits[B, num_classes]``.
        x: A single input (no batch axis).
        sigma: Noise standard deviation.
        n: Number of noise samples.
        key: PRNG key.
        batch_size: Samples classified per chunk.

    Returns:
        Integer array of shape ``(num_classes,)`` summing to ``n``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> sample_counts(f, jnp.array([5.0]), sigma=1.0, n=10, key=jax.random.PRNGKey(0),
        ...               batch_size=4).tolist()
        [10, 0]
    """
    x = jnp.asarray(x)
    check_smoothing_inputs(logits_fn, x, sigma)
    n = check_positive_int(n, "n")
    batch_size = min(check_positive_int(batch_size, "batch_size"), n)
    num_classes = jax.eval_shape(logits_fn, x[None]).shape[-1]
    return _counting_program(logits_fn, float(sigma), n, batch_size, num_classes)(x, key)


@per_model
def _counting_program(logits_fn, sigma: float, n: int, batch_size: int, num_classes: int):
    """The compiled sampling loop of :func:`sample_counts`, built once per model and settings."""
    num_chunks = -(-n // batch_size)

    @jax.jit
    def run(x, key):
        def body(i, counts):
            noise = jax.random.normal(jax.random.fold_in(key, i), (batch_size, *x.shape), x.dtype)
            # NaN logits vote for no class (one_hot(-1) is zero): p_A can only fall.
            preds = predicted_class(logits_fn(x[None] + sigma * noise))
            valid = i * batch_size + jnp.arange(batch_size) < n
            return counts + jnp.sum(
                jax.nn.one_hot(preds, num_classes, dtype=jnp.int32) * valid[:, None], axis=0
            )

        return jax.lax.fori_loop(0, num_chunks, body, jnp.zeros(num_classes, jnp.int32))

    return run


# ------------------------------------------------------------------ statistics (host)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` in float64."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _binom_sf(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return _betainc(float(k), float(n - k + 1), p)


def binomial_test_two_sided(k: int, n: int) -> float:
    """Two-sided binomial test p-value of ``k`` successes in ``n`` trials at p = 1/2.

    Args:
        k: Number of successes.
        n: Number of trials.

    Returns:
        The p-value (as SciPy's ``binomtest(k, n, 0.5).pvalue``).

    Example:
        >>> round(binomial_test_two_sided(9, 10), 6)
        0.021484
    """
    k, n = int(k), int(n)
    if n == 0:
        return 1.0
    k = max(k, n - k)
    if 2 * k == n:
        return 1.0
    return min(1.0, 2.0 * _binom_sf(k, n, 0.5))


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound on ``p``.

    The ``alpha`` quantile of ``Beta(k, n - k + 1)``, found by bisection on the
    regularised incomplete beta function.

    Args:
        k: Number of successes.
        n: Number of trials.
        alpha: Error probability.

    Returns:
        ``p_lower`` with ``P(p >= p_lower) >= 1 - alpha``.

    Example:
        >>> round(clopper_pearson_lower(100, 100, 0.05), 6)  # alpha ** (1 / n)
        0.970487
    """
    k, n = int(k), int(n)
    if k <= 0:
        return 0.0
    if k >= n:
        return alpha ** (1.0 / n)
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _binom_sf(k, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return lo


def smooth_predict(
    logits_fn: Callable,
    x,
    *,
    sigma: float,
    n: int,
    alpha: float,
    key,
    batch_size: int = 1000,
) -> int:
    """PREDICT of Cohen et al. (2019): smoothed class or :data:`ABSTAIN` (-1).

    Returns the top class when a two-sided binomial test of the top two counts
    rejects equality at level ``alpha``; the probability of returning a class
    other than ``g(x)`` is at most ``alpha``.

    Args:
        logits_fn: Batched base classifier ``x[B, ...] -> logits[B, num_classes]``.
        x: A single input (no batch axis).
        sigma: Noise standard deviation.
        n: Number of noise samples.
        alpha: Error probability of the test.
        key: PRNG key.
        batch_size: Samples classified per chunk.

    Returns:
        The predicted class (``int``) or ``-1``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> smooth_predict(f, jnp.array([3.0]), sigma=1.0, n=200, alpha=0.001,
        ...                key=jax.random.PRNGKey(0))
        0
    """
    _check_alpha(alpha)
    counts = np.asarray(
        sample_counts(logits_fn, x, sigma=sigma, n=n, key=key, batch_size=batch_size)
    )
    order = np.argsort(-counts, kind="stable")
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]]) if counts.size > 1 else 0
    if binomial_test_two_sided(n_a, n_a + n_b) > alpha:
        return ABSTAIN
    return int(order[0])


def smooth_certify(
    logits_fn: Callable,
    x,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 100000,
    alpha: float = 0.001,
    key,
    batch_size: int = 1000,
) -> tuple[int, float]:
    """CERTIFY of Cohen et al. (2019): class and certified L2 radius.

    Selects the top class from ``n0`` samples, lower-bounds its probability
    ``p_A`` from ``n`` fresh samples with the one-sided Clopper-Pearson bound at
    level ``alpha`` and returns radius ``sigma * Phi^-1(p_A_lower)``; abstains
    (``(-1, 0.0)``) when ``p_A_lower <= 1/2``. With probability at least
    ``1 - alpha`` the smoothed classifier predicts the returned class everywhere
    in the returned L2 ball.

    Args:
        logits_fn: Batched base classifier ``x[B, ...] -> logits[B, num_classes]``.
        x: A single input (no batch axis).
        sigma: Noise standard deviation.
        n0: Samples used to select the class.
        n: Samples used to estimate ``p_A``.
        alpha: Failure probability.
        key: PRNG key.
        batch_size: Samples classified per chunk.

    Returns:
        ``(class or -1, radius)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], -x[:, 0]], axis=1)
        >>> c, r = smooth_certify(f, jnp.array([1.0]), sigma=0.5, n=2000,
        ...                       key=jax.random.PRNGKey(0))
        >>> c, 0.5 < r < 1.0  # true radius: distance to the boundary = 1.0
        (0, True)
    """
    _check_alpha(alpha)
    k0, k1 = jax.random.split(key)
    counts0 = np.asarray(
        sample_counts(logits_fn, x, sigma=sigma, n=n0, key=k0, batch_size=batch_size)
    )
    c_a = int(np.argmax(counts0))
    counts = np.asarray(
        sample_counts(logits_fn, x, sigma=sigma, n=n, key=k1, batch_size=batch_size)
    )
    p_lower = clopper_pearson_lower(int(counts[c_a]), n, alpha)
    if p_lower <= 0.5:
        return ABSTAIN, 0.0
    return c_a, float(sigma * NormalDist().inv_cdf(p_lower))


def certified_accuracy_at_radii(predictions, radii, labels, thresholds):
    """Fraction of examples certified correct at each L2 radius threshold.

    Args:
        predictions: Smoothed predictions ``(N,)`` (``-1`` = abstain).
        radii: Certified radii ``(N,)``.
        labels: True labels ``(N,)``.
        thresholds: Radii ``(R,)`` at which to evaluate.

    Returns:
        NumPy array ``(R,)``: mean of ``(prediction == label) & (radius >= r)``.

    Example:
        >>> certified_accuracy_at_radii([0, 1, -1], [0.5, 1.0, 0.0], [0, 0, 1],
        ...                             [0.0, 0.6]).tolist()
        [0.3333333333333333, 0.0]
    """
    predictions = np.asarray(predictions)
    radii = np.asarray(radii, dtype=np.float64)
    labels = np.asarray(labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    correct = predictions == labels
    return np.mean(correct[None, :] & (radii[None, :] >= thresholds[:, None]), axis=1)
