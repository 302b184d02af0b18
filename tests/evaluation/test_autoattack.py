"""AutoAttack: worst case per example, reproducible from a key, resumable, diagnostics."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax import evaluation as adv_eval

W = jax.random.normal(jax.random.key(0), (16, 5))


def _logits_fn(x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ W) * 3.0


X = np.asarray(jax.random.uniform(jax.random.key(1), (12, 4, 4, 1)))
Y = np.asarray(jnp.argmax(_logits_fn(X), -1))


def _attacks():
    return adv_eval.standard_attacks(0.1, steps=4, targets=2, queries=10)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("aa")
    result = adv_eval.autoattack(
        _logits_fn,
        X,
        Y,
        eps=0.1,
        key=jax.random.key(5),
        attacks=_attacks(),
        version="custom",
        batch_size=8,
        state_dir=state_dir,
    )
    return result, state_dir


def test_worst_case_per_example_and_valid_adversarials(full):
    result, _ = full
    assert result.attacks_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    after = [result.per_attack[n]["robust_accuracy_after"] for n in result.attacks_run]
    assert after == sorted(after, reverse=True) and after[-1] == result.robust_accuracy
    assert result.robust_accuracy <= result.clean_accuracy
    broken = ~result.robust & (np.argmax(_logits_fn(X), -1) == Y)
    assert np.all(np.argmax(np.asarray(_logits_fn(result.x_adv[broken])), -1) != Y[broken])
    assert np.abs(result.x_adv - X).max() <= 0.1 + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_reproducible_from_a_key(full):
    result, _ = full
    again = adv_eval.autoattack(
        _logits_fn,
        X,
        Y,
        eps=0.1,
        key=jax.random.key(5),
        attacks=_attacks(),
        version="custom",
        batch_size=8,
        diagnostics=False,
    )
    np.testing.assert_array_equal(again.robust, result.robust)
    np.testing.assert_array_equal(again.x_adv, result.x_adv)


def test_resumes_from_a_saved_state(full):
    result, state_dir = full
    saved = json.loads((state_dir / "autoattack_state.json").read_text())
    assert saved["attacks_run"] == result.attacks_run
    with np.load(state_dir / "autoattack_state.npz", allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["robust"], result.robust)
    # Everything done: a second call runs no attack and returns the same flags.
    resumed = adv_eval.autoattack(
        _logits_fn,
        X,
        Y,
        eps=0.1,
        key=jax.random.key(5),
        attacks=_attacks(),
        version="custom",
        batch_size=8,
        state_dir=state_dir,
        diagnostics=False,
    )
    np.testing.assert_array_equal(resumed.robust, result.robust)
    assert resumed.per_attack == {k: v for k, v in saved["per_attack"].items()}
    with pytest.raises(ValueError, match="saved AutoAttack state"):
        adv_eval.autoattack(
            _logits_fn,
            X,
            Y,
            eps=0.2,
            key=jax.random.key(5),
            attacks=_attacks(),
            version="custom",
            state_dir=state_dir,
        )


def test_bad_version_and_missing_attacks():
    with pytest.raises(ValueError, match="unknown version"):
        adv_eval.autoattack(_logits_fn, X, Y, eps=0.1, key=jax.random.key(0), version="fast")
    with pytest.raises(ValueError, match="custom"):
        adv_eval.autoattack(_logits_fn, X, Y, eps=0.1, key=jax.random.key(0), version="custom")


def test_diagnostics_flag_zero_gradients_and_randomness():
    def staircase(x):  # a quantised model: zero gradient almost everywhere
        return _logits_fn(jnp.round(x * 4) / 4)

    figures, warnings = adv_eval.gradient_masking_checks(staircase, X, Y)
    assert figures["zero_gradient_share"] == 1.0
    assert any("zero input gradient" in w for w in warnings)

    counter = {"calls": 0}

    def noisy(x):  # different logits on every trace/call
        counter["calls"] += 1
        return _logits_fn(x) + counter["calls"]

    _, warnings = adv_eval.gradient_masking_checks(noisy, X, Y)
    assert any("EOT" in w for w in warnings)
    _, warnings = adv_eval.gradient_masking_checks(
        _logits_fn, X, Y, black_box_accuracy=0.1, white_box_accuracy=0.3
    )
    assert any("black-box attack beats" in w for w in warnings)


def test_evaluate_reports_and_renders_warnings():
    def staircase(x):
        return _logits_fn(jnp.round(x * 4) / 4)

    report = adv_eval.evaluate(
        staircase,
        X,
        Y,
        {"pgd": lambda e: advjax.pgd(e, steps=2)},
        [0.0, 0.05, 0.6],
        key=jax.random.key(0),
        batch_size=12,
    )
    assert report.warnings and report.diagnostics["zero_gradient_share"] == 1.0
    markdown = adv_eval.to_markdown(report)
    assert "Gradient-masking diagnostics" in markdown and "WARNING" in markdown
    assert report.to_dict()["warnings"] == report.warnings


@pytest.mark.slow
def test_rand_version_runs_eot_apgd_on_a_randomized_model():
    def randomized(x, key):
        return _logits_fn(jnp.clip(x + 0.02 * jax.random.normal(key, x.shape), 0, 1))

    attacks = adv_eval.rand_attacks(0.1, steps=3, eot_samples=2)
    result = adv_eval.autoattack(
        randomized, X, Y, eps=0.1, key=jax.random.key(0), version="rand", attacks=attacks
    )
    assert result.attacks_run == ["apgd-ce", "apgd-dlr"]
    assert np.abs(result.x_adv - X).max() <= 0.1 + 1e-6


@pytest.mark.slow
def test_evaluate_accepts_the_new_attack_factories():
    report = adv_eval.evaluate(
        _logits_fn,
        X,
        Y,
        {
            "apgd": lambda e: advjax.attacks.apgd(e, steps=3),
            "fab": lambda e: advjax.attacks.fab(e, steps=3, num_targets=2),
            "square": lambda e: advjax.attacks.square(e, queries=5),
        },
        [0.0, 0.05, 0.1],
        key=jax.random.key(0),
        batch_size=12,
    )
    assert report.worst_case.robust_accuracy[-1] <= min(
        r.robust_accuracy[-1] for r in report.attacks
    )


def test_a_stage_with_nothing_left_to_break_costs_nothing_and_reports_zero():
    w = jax.random.normal(jax.random.key(0), (16, 10))
    logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w  # noqa: E731
    x = jax.random.uniform(jax.random.key(1), (8, 16))
    y = jnp.argmax(logits_fn(x), -1)
    calls = []
    attacks = {
        "apgd-ce": advjax.apgd(0.5, steps=5),
        "never": lambda f, xb, yb, *, key: calls.append(1) or xb,
    }
    result = adv_eval.autoattack(
        logits_fn,
        x,
        y,
        eps=0.5,
        key=jax.random.key(2),
        version="custom",
        attacks=attacks,
        diagnostics=False,
    )
    assert result.robust_accuracy == 0.0 and result.clean_accuracy == 1.0
    assert calls == [] and result.per_attack["never"]["broken"] == 0
    assert result.attacks_run == ["apgd-ce", "never"]


def test_standard_l1_version_runs_the_l1_apgd_pair_within_the_l1_ball():
    # FAB-T and Square have no L1 update: the standard L1 ensemble is l1-APGD-CE and -T
    attacks = adv_eval.standard_attacks(1.0, norm="l1", steps=4, targets=2)
    assert list(attacks) == ["apgd-ce", "apgd-t"]
    result = adv_eval.autoattack(
        _logits_fn, X, Y, eps=1.0, key=jax.random.key(0), norm="l1", batch_size=12
    )
    assert result.attacks_run == ["apgd-ce", "apgd-t"]
    assert np.abs(result.x_adv - X).reshape(len(X), -1).sum(-1).max() <= 1.0 + 1e-5
    assert result.robust_accuracy <= result.clean_accuracy
