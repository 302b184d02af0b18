"""Ensembles and the abstaining guard."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import defenses as d

A = lambda x: x  # noqa: E731
B = lambda x: 2.0 * x  # noqa: E731
C = lambda x: -x  # noqa: E731
X = jnp.array([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]])


def test_ensemble_methods():
    np.testing.assert_allclose(d.ensemble([A, B])(X), 1.5 * X, rtol=1e-6)
    probs = jnp.exp(d.ensemble([A, C], method="probs")(X))
    expected = 0.5 * (jax.nn.softmax(X) + jax.nn.softmax(-X))
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    weighted = d.ensemble([A, C], weights=[3.0, 1.0])(X)
    np.testing.assert_allclose(weighted, 0.5 * X, rtol=1e-6)
    vote = d.ensemble([A, B, C], method="vote")
    assert jnp.argmax(vote(X), -1).tolist() == [0, 1]
    assert jnp.argmax(d.ensemble([A, C, C], method="vote")(X), -1).tolist() != [0, 1]


def test_vote_backward_is_probability_averaging():
    vote = d.ensemble([A, C], method="vote")
    probs = d.ensemble([A, C], method="probs")
    g_vote = jax.grad(lambda x: vote(x)[:, 0].sum())(X)
    g_probs = jax.grad(lambda x: probs(x)[:, 0].sum())(X)
    np.testing.assert_allclose(g_vote, g_probs, rtol=1e-5)


def test_agreement():
    labels = jnp.array([0, 1])
    assert d.agreement([A, B, C], labels, X).tolist() == pytest.approx([2 / 3, 2 / 3])


def test_guard_abstains():
    det = d.calibrate(d.Detector("big", lambda x: x.max(axis=-1)), X, fpr=0.5)
    g = d.guard(A, detectors=[det])
    assert g.predict(X).tolist() == [0, -1]
    low = d.guard(A, min_confidence=0.6)
    assert low.predict(jnp.array([[5.0, 0.0, 0.0], [0.1, 0.0, 0.0]])).tolist() == [0, -1]
    disagree = d.guard(A, members=[A, C], min_agreement=1.0)
    assert disagree.predict(X).tolist() == [-1, -1]
    agree = d.guard(A, members=[A, B], min_agreement=1.0)
    assert agree.predict(X).tolist() == [0, 1]


def test_attack_logits_count_abstention_as_not_fooled():
    det = d.calibrate(d.Detector("big", lambda x: x.max(axis=-1)), X, fpr=0.5)
    g = d.guard(A, detectors=[det])
    y = jnp.array([2, 2])  # both inputs are misclassified by A
    joint = g.attack_logits(y)(X)
    # input 0 answers (wrongly): still misclassified; input 1 abstains: now "correct"
    assert jnp.argmax(joint, -1).tolist() == [0, 2]
    grad = jax.grad(lambda x: g.attack_logits(y)(x)[:, 2].sum())(X)
    assert bool(jnp.isfinite(grad).all())


def test_guard_errors():
    with pytest.raises(ValueError, match="not calibrated"):
        d.guard(A, detectors=[d.confidence_detector(A)])
    with pytest.raises(ValueError, match="members"):
        d.guard(A, min_agreement=0.5)
    with pytest.raises(ValueError, match="min_confidence"):
        d.guard(A, min_confidence=1.5)
    with pytest.raises(ValueError, match="unknown ensemble method"):
        d.ensemble([A], method="median")
    with pytest.raises(ValueError, match="weights"):
        d.ensemble([A, B], weights=[1.0])
