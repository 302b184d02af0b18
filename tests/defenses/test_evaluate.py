"""evaluate_defense: adaptive beats naive, EOT warning, table rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import advjax
from advjax import defenses as d


def test_adaptive_beats_masked_gradients_on_bit_depth(linear_mnist):
    f, x, y = linear_mnist
    x, y = x[:100], y[:100]
    defended = d.preprocess(f, d.bit_depth(4))
    eps = 0.2
    # "naive" here: PGD straight through the quantiser, whose gradient is zero.
    result = d.evaluate_defense(
        defended,
        x,
        y,
        eps=eps,
        key=jax.random.key(0),
        base_logits_fn=defended,
        naive_attack=advjax.pgd(eps, steps=10),
        adaptive_attack=advjax.pgd(eps, steps=10),
    )
    assert result.clean_accuracy > 0.7
    assert result.naive_robust_accuracy > 0.5
    assert result.adaptive_robust_accuracy < 0.1
    assert result.robust_accuracy <= min(
        result.adaptive_robust_accuracy, result.naive_robust_accuracy
    )
    assert result.markdown_row().count("|") == 11
    # the worst case over both attacks is its own column, beside each attack's
    assert f"| {100 * result.robust_accuracy:.1f}% |" in result.markdown_row()
    header = d.to_markdown([result]).split("\n")[0]
    assert "robust acc (both)" in header and header.count("|") == 11
    assert result.gradient_free_queries == 1000  # deterministic: Square ran on the survivors


def test_gradient_free_stage_catches_masked_gradients(linear_mnist):
    """A quantiser without BPDA has zero gradient: PGD stalls, the Square stage does not."""
    f, x, y = linear_mnist
    x, y = x[:64], y[:64]
    masked = lambda z: f(jnp.round(z * 3) / 3)  # noqa: E731  (plain callable: no BPDA)
    stalled = advjax.pgd(0.2, steps=10, random_start=False)
    kwargs = dict(eps=0.2, key=jax.random.key(0), base_logits_fn=f, adaptive_attack=stalled)
    kwargs["naive_attack"] = advjax.pgd(0.2, steps=1)
    without = d.evaluate_defense(masked, x, y, gradient_free_queries=0, **kwargs)
    assert without.adaptive_robust_accuracy > 0.6  # the gradient attack is fooled
    assert without.gradient_free_queries == 0 and "| - |" in without.markdown_row()
    result = d.evaluate_defense(masked, x, y, gradient_free_queries=300, **kwargs)
    assert result.adaptive_robust_accuracy < 0.2
    assert result.gradient_free_breaks > 0.4
    assert result.adaptive_robust_accuracy == pytest.approx(
        without.adaptive_robust_accuracy - result.gradient_free_breaks
    )
    assert result.robust_accuracy <= result.adaptive_robust_accuracy
    with pytest.raises(ValueError, match="gradient_free_queries"):
        d.evaluate_defense(masked, x, y, gradient_free_queries=-1, **kwargs)


def test_randomized_without_eot_warns_and_flags(linear_mnist):
    f, x, y = linear_mnist
    noisy = d.preprocess(f, d.gaussian_noise(0.1))
    kwargs = dict(
        eps=0.1,
        key=jax.random.key(0),
        base_logits_fn=f,
        naive_attack=advjax.pgd(0.1, steps=1),
        adaptive_attack=advjax.pgd(0.1, steps=1),
    )
    with pytest.warns(d.RandomizedWithoutEOTWarning):
        result = d.evaluate_defense(noisy, x[:4], y[:4], eot_samples=1, **kwargs)
    assert result.randomized_without_eot and "warning" in result.markdown_row()
    result = d.evaluate_defense(noisy, x[:4], y[:4], eot_samples=2, **kwargs)
    assert result.randomized and not result.randomized_without_eot and result.eot_samples == 2
    assert result.gradient_free_queries == 0  # Square is only run on deterministic defenses


def test_guard_evaluation_counts_rejections(linear_mnist):
    f, x, y = linear_mnist
    det = d.calibrate(d.confidence_detector(f), x[1000:], fpr=0.1)
    result = d.evaluate_defense(
        d.guard(f, detectors=[det]),
        x[:30],
        y[:30],
        eps=0.1,
        key=jax.random.key(0),
        base_logits_fn=f,
        naive_attack=advjax.pgd(0.1, steps=3),
        adaptive_attack=advjax.pgd(0.1, steps=3),
    )
    assert result.false_positive_rate <= 0.3
    assert result.clean_accuracy + result.false_positive_rate <= 1.0 + 1e-9
    assert "detector" not in d.to_markdown([result]).split("\n")[0]
