"""Fast AutoAttack and early exit: same answers as the full computation, less work."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax import evaluation as adv_eval
from advjax.attacks import square_from

W = jax.random.normal(jax.random.key(0), (16, 5))


def _logits_fn(x):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ W) * 3.0


X = np.asarray(jax.random.uniform(jax.random.key(1), (16, 4, 4, 1)))
Y = np.array(jnp.argmax(_logits_fn(X), -1))
Y[::5] = (Y[::5] + 1) % 5  # a few misclassified points
FAST = dict(
    eps=0.08,
    key=jax.random.key(3),
    steps=12,
    queries=40,
)


@pytest.fixture(scope="module")
def fast():
    return adv_eval.fast_autoattack(_logits_fn, X, Y, batch_size=16, segment=12, **FAST)


def test_result_keeps_the_threat_model_and_counts_only_real_breaks(fast):
    assert fast.attacks_run[:4] == ["apgd-ce", "apgd-t", "probe", "square"]
    assert fast.escalated is None and fast.warnings == []
    assert not np.any(fast.robust & ~fast.correct)
    assert fast.robust_accuracy <= fast.clean_accuracy < 1.0
    broken = fast.correct & ~fast.robust
    assert broken.any() and fast.robust.any()
    predicted = np.argmax(np.asarray(_logits_fn(fast.x_adv)), -1)
    assert np.all(predicted[broken] != Y[broken])
    assert np.abs(fast.x_adv - X).max() <= 0.08 + 1e-6
    assert fast.x_adv.min() >= 0.0 and fast.x_adv.max() <= 1.0
    np.testing.assert_array_equal(fast.x_adv[fast.robust], X[fast.robust])
    after = [fast.per_attack[n]["robust_accuracy_after"] for n in fast.attacks_run]
    assert after == sorted(after, reverse=True) and after[-1] == fast.robust_accuracy
    total = sum(fast.per_attack[n]["broken"] for n in fast.attacks_run)
    assert total == int(broken.sum())


def test_independent_of_segments_batch_size_and_device_layout(fast):
    again = adv_eval.fast_autoattack(_logits_fn, X, Y, batch_size=3, segment=5, **FAST)
    np.testing.assert_array_equal(again.robust, fast.robust)
    np.testing.assert_array_equal(again.x_adv, fast.x_adv)
    # early exit: the segmented run spends fewer example-iterations than 12 per point
    ce = again.per_attack["apgd-ce"]
    assert ce["example_iterations"] < 12 * ce["examples"]


def test_resumes_from_its_saved_state(tmp_path, fast):
    first = adv_eval.fast_autoattack(
        _logits_fn, X, Y, batch_size=16, segment=12, state_dir=tmp_path, **FAST
    )
    np.testing.assert_array_equal(first.robust, fast.robust)
    resumed = adv_eval.fast_autoattack(
        _logits_fn, X, Y, batch_size=16, segment=12, state_dir=tmp_path, **FAST
    )
    np.testing.assert_array_equal(resumed.robust, fast.robust)
    assert resumed.per_attack["apgd-ce"]["seconds"] == first.per_attack["apgd-ce"]["seconds"]
    with pytest.raises(ValueError, match="was made with"):
        adv_eval.fast_autoattack(_logits_fn, X, Y, state_dir=tmp_path, **{**FAST, "steps": 13})


def test_resumed_after_an_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """Square's starts (the closest points found) and margins survive the saved state."""
    from advjax.evaluation import _fast

    x = np.asarray(jax.random.uniform(jax.random.key(21), (64, 4, 4, 1)))
    y = np.asarray(jnp.argmax(_logits_fn(x), -1))
    options = dict(batch_size=16, **{**FAST, "steps": 1, "queries": 60, "eps": 0.05})
    whole = adv_eval.fast_autoattack(_logits_fn, x, y, **options)
    assert whole.per_attack["square"]["broken_per_chunk"][0] > 0  # Square's warm starts matter

    def interrupted(*args, **kwargs):
        raise RuntimeError("interrupted")

    with monkeypatch.context() as patched:
        patched.setattr(_fast, "_square_stage", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            adv_eval.fast_autoattack(_logits_fn, x, y, state_dir=tmp_path, **options)
    resumed = adv_eval.fast_autoattack(_logits_fn, x, y, state_dir=tmp_path, **options)
    assert resumed.attacks_run == whole.attacks_run
    np.testing.assert_array_equal(resumed.robust, whole.robust)
    np.testing.assert_array_equal(resumed.x_adv, whole.x_adv)


def _masked_logits_fn(x):
    """Quantised inputs: every input gradient is exactly zero (shattered gradients)."""
    return _logits_fn(jnp.round(x * 4) / 4)


def test_masked_gradients_escalate_to_the_full_ensemble():
    y = np.asarray(jnp.argmax(_masked_logits_fn(X), -1))
    result = adv_eval.fast_autoattack(_masked_logits_fn, X, y, batch_size=16, **FAST)
    assert result.escalated is not None and "all-zero input gradient" in result.escalated
    escalation = [n for n in result.attacks_run if n.startswith("escalation:")]
    assert escalation == ["escalation:apgd-t", "escalation:fab-t", "escalation:square"]
    # APGD at a fixed point (zero gradient, no momentum) leaves the loop at once
    assert result.per_attack["apgd-ce"]["example_iterations"] == 0
    full = adv_eval.autoattack(
        _masked_logits_fn,
        X,
        y,
        eps=0.08,
        key=jax.random.key(3),
        version="custom",
        attacks=adv_eval.standard_attacks(0.08, steps=12, targets=4, queries=40),
        diagnostics=False,
    )
    assert result.robust_accuracy < result.clean_accuracy
    assert result.robust_accuracy <= full.robust_accuracy + 2 / len(X)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"norm": "l1"}, "supports norm"),
        ({"eps": -0.1}, "eps"),
        ({"boundary_share": 1.5}, "boundary_share"),
        ({"probe_examples": -1}, "probe_examples"),
        ({"reach": 0.0}, "reach"),
        ({"segment": 0}, "segment"),
    ],
)
def test_bad_options_are_refused_before_any_attack(options, match):
    with pytest.raises(ValueError, match=match):
        adv_eval.fast_autoattack(_logits_fn, X, Y, **{**FAST, **options})


def test_too_few_classes_for_targeted_dlr_is_refused():
    three = lambda x: _logits_fn(x)[:, :3]  # noqa: E731
    with pytest.raises(ValueError, match="4"):
        adv_eval.fast_autoattack(three, X, np.zeros(len(X), int), **FAST)


def test_linearised_distance_is_exact_for_a_linear_model():
    w = jax.random.normal(jax.random.key(7), (6, 4))
    x = jax.random.uniform(jax.random.key(8), (5, 6))
    logits_fn = lambda v: v @ w  # noqa: E731
    y = jnp.argmax(logits_fn(x), -1)
    for norm in ("linf", "l2"):
        d = np.asarray(adv_eval.linearised_distances(logits_fn, x, y, norm=norm))
        assert np.all(np.isinf(d[np.arange(5), np.asarray(y)]))
        targets, _ = adv_eval.malt_targets(d, 1.0, max_targets=1)
        t = targets[:, 0]
        g = (w[:, t] - w[:, y]).T  # gradient of z_t - z_y, per example
        step = jnp.sign(g) if norm == "linf" else g / jnp.linalg.norm(g, axis=1, keepdims=True)
        for scale, flips in ((0.99, False), (1.01, True)):
            moved = logits_fn(x + scale * d[np.arange(5), t][:, None] * step)
            reached = moved[jnp.arange(5), t] > moved[jnp.arange(5), y]
            assert bool(jnp.all(reached == flips)), (norm, scale)


def test_malt_targets_keep_at_least_one_and_at_most_max():
    d = np.array([[np.inf, 5.0, 6.0, 7.0], [0.1, np.inf, 0.2, 0.3]])
    targets, counts = adv_eval.malt_targets(d, 0.1, max_targets=2, reach=2.5)
    assert targets.tolist() == [[1, 2], [0, 2]] and counts.tolist() == [1, 2]


def _quickstart_attacks():
    return {
        "fgsm": lambda e: advjax.fgsm(e),
        "pgd": lambda e: advjax.pgd(e, steps=5, step_size=e / 2, restarts=3),
    }


def test_evaluate_early_exit_gives_exactly_the_same_counts():
    x = np.asarray(jax.random.uniform(jax.random.key(4), (40, 4, 4, 1)))
    y = np.asarray(jnp.argmax(_logits_fn(x), -1))
    runs = [
        adv_eval.evaluate(
            _logits_fn,
            x,
            y,
            _quickstart_attacks(),
            [0.0, 0.02, 0.05, 0.1],
            key=jax.random.key(1),
            early_exit=early_exit,
            batch_size=batch_size,
            diagnostics=False,
        )
        for early_exit, batch_size in ((False, 40), (True, 40), (True, 7))
    ]
    reference = runs[0]
    assert 0 < reference.worst_case.robust_accuracy[-1] < reference.clean_accuracy
    for report in runs[1:]:
        for mine, theirs in zip(report.attacks, reference.attacks, strict=True):
            assert mine.robust_accuracy == theirs.robust_accuracy
            assert mine.success_rate == theirs.success_rate
        np.testing.assert_array_equal(report.robust_examples, reference.robust_examples)


def test_compacted_loop_matches_one_segment():
    init = jax.jit(lambda x: {"value": x, "found": x >= 7})

    @jax.jit
    def advance(x, carry, start, stop):
        def body(i, c):
            value = jnp.where(c["found"], c["value"], c["value"] + x)
            return {"value": value, "found": value >= 7}

        return jax.lax.fori_loop(start, stop, body, carry)

    x = np.array([0, 1, 2, 3, 7])
    one, work_one = adv_eval.compacted_loop(init, advance, [x], steps=9, segment=9, batch_size=8)
    cut, work_cut = adv_eval.compacted_loop(init, advance, [x], steps=9, segment=2, batch_size=2)
    np.testing.assert_array_equal(one["value"], cut["value"])
    assert one["value"].tolist() == [0, 7, 8, 9, 7]
    assert work_cut < work_one == 4 * 9


def test_square_moves_outwards_while_it_keeps_breaking():
    """Masked gradients: margins say nothing, Square breaks far points, chunk after chunk."""
    x = np.asarray(jax.random.uniform(jax.random.key(11), (48, 4, 4, 1)))
    y = np.asarray(jnp.argmax(_masked_logits_fn(x), -1))
    options = {**FAST, "steps": 2, "queries": 100, "eps": 0.15}
    result = adv_eval.fast_autoattack(
        _masked_logits_fn, x, y, batch_size=16, boundary_share=0.2, **options
    )
    square, probe = result.per_attack["square"], result.per_attack["probe"]
    chunks = square["broken_per_chunk"]
    assert len(chunks) > 2 and all(chunks[:2]), square
    assert sum(chunks) + square["broken_by_runs_from_own_start"] == square["broken"]
    robust_before = round(48 * result.per_attack["apgd-t"]["robust_accuracy_after"])
    assert square["deepest_break"] <= square["examples"] <= robust_before
    # the probe (beyond the first two chunks, Square's own start) breaks points: it escalates
    chunk = int(np.ceil(0.2 * robust_before))
    assert 0 < probe["broken"] <= probe["examples"] <= robust_before - 2 * chunk
    assert "black-box probe" in result.escalated


@pytest.mark.parametrize("options", [{"square_runs": 3}, {"boundary_share": 0.0}])
def test_square_options_keep_every_part_running(options):
    """Three Square runs per near point, and no chunk at all: the probe still runs."""
    x = np.asarray(jax.random.uniform(jax.random.key(21), (64, 4, 4, 1)))
    y = np.asarray(jnp.argmax(_logits_fn(x), -1))
    settings = {**FAST, "steps": 1, "queries": 60, "eps": 0.05, "probe_examples": 5}
    result = adv_eval.fast_autoattack(_logits_fn, x, y, batch_size=16, **settings, **options)
    square, probe = result.per_attack["square"], result.per_attack["probe"]
    assert result.robust_accuracy < result.clean_accuracy
    assert probe["examples"] >= 5  # at least probe_examples; more where the batch has room
    if options.get("boundary_share") == 0.0:
        assert square["examples"] == 0
    else:
        robust = round(64 * result.per_attack["apgd-t"]["robust_accuracy_after"])
        assert square["examples"] >= int(np.ceil(0.2 * robust)) > 0


def test_square_starts_from_the_closest_point_found():
    """From the white-box attacks' closest point, one query can be enough."""
    w = jnp.array([[1.0, -1.0], [1.0, -1.0]])
    logits_fn = lambda v: v @ w + jnp.array([0.0, 1.0])  # noqa: E731  class 1 wins below 0.25
    run = square_from(0.3, queries=1)
    x, y = jnp.array([[0.5, 0.5]]), jnp.array([0])
    near = jnp.array([[0.2, 0.2]])
    from_near = run(logits_fn, x, y, near, jnp.array([True]), key=jax.random.key(0))
    assert int(jnp.argmax(logits_fn(from_near), -1)[0]) == 1
    own = run(logits_fn, x, y, near, jnp.array([False]), key=jax.random.key(0))
    plain = advjax.attacks.square(0.3, queries=1)(logits_fn, x, y, key=jax.random.key(0))
    np.testing.assert_array_equal(own, plain)  # without a start: Square's own draws
