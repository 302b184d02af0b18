"""advjax.losses.ce: the value of -log softmax, with gradients accurate at saturation."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from advjax import losses


def _reference(logits: np.ndarray, labels: np.ndarray):
    """Float64 value and gradient of -log softmax(z)_y."""
    z = logits.astype(np.float64)
    shifted = z - z.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    rows = np.arange(len(z))
    value = -log_probs[rows, labels]
    probs = np.exp(log_probs)
    others = np.where(np.eye(z.shape[1], dtype=bool)[labels], 0.0, probs)
    grad = others.copy()
    grad[rows, labels] = -others.sum(-1)
    return value, grad


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 1.0, 10.0, 40.0]),
    classes=st.integers(2, 12),
)
def test_hard_label_ce_matches_float64_value_and_gradient(seed, scale, classes):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(6, classes)) * scale).astype(np.float32)
    labels = rng.integers(0, classes, size=6)
    value, grad = jax.value_and_grad(lambda z: losses.ce(z, jnp.asarray(labels)).sum())(logits)
    ref_value, ref_grad = _reference(logits, labels)
    per_example = np.asarray(losses.ce(jnp.asarray(logits), jnp.asarray(labels)))
    np.testing.assert_allclose(per_example, ref_value, rtol=1e-5, atol=1e-6)
    assert np.isclose(float(value), ref_value.sum(), rtol=1e-5, atol=1e-5)
    # relative to each row's gradient norm: accurate in direction even when tiny
    scale_per_row = np.abs(ref_grad).max(-1, keepdims=True) + 1e-30
    assert np.all(np.abs(np.asarray(grad) - ref_grad) / scale_per_row < 1e-3)


def test_saturated_gradient_keeps_its_direction():
    # p_y = 1 - 3e-10: log_softmax's autodiff rounds the true component to 0
    logits = jnp.array([[22.0, 0.0, -1.0]])
    grad = jax.grad(lambda z: losses.ce(z, jnp.array([0])).sum())(logits)
    _, ref = _reference(np.asarray(logits), np.array([0]))
    np.testing.assert_allclose(np.asarray(grad), ref, rtol=1e-5)
    assert float(grad[0, 0]) < 0.0  # the true logit is still pulled down


def test_soft_targets_keep_the_log_softmax_formula():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    soft = jnp.array([[0.7, 0.2, 0.1]])
    expected = -jnp.sum(soft * jax.nn.log_softmax(logits), -1)
    np.testing.assert_allclose(losses.ce(logits, soft), expected, rtol=1e-6)
    np.testing.assert_allclose(
        losses.ce(logits, jnp.array([0])),
        losses.ce(logits, jnp.array([[1.0, 0.0, 0.0]])),
        rtol=1e-6,
    )
