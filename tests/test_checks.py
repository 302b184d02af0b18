"""The seven inputs of issue 14, each with its right value or clear error.

Each test names the kind of fault it guards against; ``tests/test_checks_fuzz.py``
drives every entry point with generated inputs of the same kinds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax
from advjax._checks import InvalidInputError
from advjax.evaluation._autoattack import _version_attacks

KEY = jax.random.key(0)


def _two_class_linear(seed=0, n=200):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(20, 2))
    w[:, 1] -= np.mean(w[:, 1] - w[:, 0])  # margins centred on 0: many points near the boundary
    w = jnp.asarray(w, jnp.float32)
    x = jnp.asarray(rng.uniform(size=(n, 20)), jnp.float32)
    logits_fn = lambda v: v @ w  # noqa: E731
    y = jnp.argmax(logits_fn(x), -1)
    return logits_fn, w, x, y


def _exact_linf_robust_accuracy(w, x, y, eps):
    """A linear 2-class model: the worst point moves each coordinate against the margin."""
    w, x, y = np.asarray(w, np.float64), np.asarray(x, np.float64), np.asarray(y)
    direction = (w[:, 1] - w[:, 0])[None] * np.where(y == 0, 1.0, -1.0)[:, None]
    worst = np.clip(x + eps * np.sign(direction), 0.0, 1.0)
    logits = worst @ w
    return float(np.mean(np.argmax(logits, -1) == y))


# 1. A loss that needs more classes than the model has -------------------------------


@pytest.mark.parametrize(
    "build", [lambda: advjax.apgd(0.1, loss="dlr"), lambda: advjax.pgd(0.1, loss="dlr")]
)
def test_dlr_on_two_classes_is_a_clear_error(build):
    logits_fn, _, x, y = _two_class_linear()
    with pytest.raises(ValueError, match=r"'dlr' loss needs logits with at least 3 classes, got 2"):
        build()(logits_fn, x, y, key=KEY)


def test_apgd_ce_on_two_classes_matches_the_closed_form():
    logits_fn, w, x, y = _two_class_linear()
    exact = _exact_linf_robust_accuracy(w, x, y, 0.1)
    assert 0.2 < exact < 0.8  # the case is not trivial
    x_adv = advjax.apgd(0.1, loss="ce")(logits_fn, x, y, key=KEY)
    measured = float(np.mean(np.argmax(np.asarray(logits_fn(x_adv)), -1) == np.asarray(y)))
    assert exact <= measured <= exact + 0.02, (exact, measured)


@pytest.mark.parametrize(
    "build, classes, needed",
    [
        (lambda: advjax.apgd_t(0.1, num_targets=2, steps=2), 3, 4),
        (lambda: advjax.apgd_t(0.1, num_targets=9, steps=2), 8, 10),
        (lambda: advjax.fab(0.1, num_targets=9, steps=2), 8, 10),
        (lambda: advjax.pgd(0.1, loss="cw", steps=2), 1, 2),
        (lambda: advjax.fgsm(0.1), 1, 2),
    ],
)
def test_every_attack_checks_its_class_count(build, classes, needed):
    w = jnp.ones((4, classes))
    x, y = jnp.full((2, 4), 0.5), jnp.zeros(2, jnp.int32)
    with pytest.raises(ValueError, match=rf"at least {needed} classes.*(has|got) {classes}"):
        build()(lambda v: v @ w, x, y, key=KEY)


def test_dlr_targeted_and_choose_targets_check_class_counts():
    with pytest.raises(ValueError, match="'dlr_targeted' loss needs .* 4 classes, got 3"):
        advjax.losses.dlr_targeted(jnp.zeros((1, 3)), jnp.array([0]), jnp.array([1]))
    with pytest.raises(ValueError, match="choose_targets .* at least 2 classes"):
        advjax.attacks.choose_targets(jnp.zeros((2, 1)), jnp.array([0, 0]), "random", KEY)


# 2. AutoAttack on a model with fewer than 10 classes ----------------------------------


def test_standard_autoattack_uses_k_minus_1_targets_for_both_targeted_attacks():
    attacks = _version_attacks("standard", 0.1, "linf", 8, 0.0, 1.0)
    assert attacks["apgd-t"].min_classes == 8
    assert "num_targets=7" in attacks["apgd-t"].attack_name
    assert "num_targets=7" in attacks["fab-t"].attack_name
    ten = _version_attacks("standard", 0.1, "linf", 10, 0.0, 1.0)
    assert "num_targets=9" in ten["apgd-t"].attack_name


def _counting_model(w):
    calls = {"concrete": 0}

    def logits_fn(v):
        if not isinstance(v, jax.core.Tracer):
            calls["concrete"] += 1
        return v.reshape(v.shape[0], -1) @ w

    return logits_fn, calls


def test_autoattack_on_an_8_class_model_runs_every_attack():
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(6, 6)), jnp.float32)
    logits_fn = lambda v: v @ w  # noqa: E731
    y = jnp.argmax(logits_fn(x), -1)
    result = advjax.evaluation.autoattack(logits_fn, x, y, eps=0.05, key=KEY, diagnostics=False)
    assert result.attacks_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert 0.0 <= result.robust_accuracy <= result.clean_accuracy


def test_an_ensemble_that_cannot_run_fails_before_any_attack():
    w = jnp.ones((4, 8))
    logits_fn, calls = _counting_model(w)
    x, y = jnp.full((3, 4), 0.5), jnp.array([0, 1, 2])
    attacks = {"apgd-ce": advjax.apgd(0.1, steps=3), "apgd-t": advjax.apgd_t(0.1, num_targets=9)}
    with pytest.raises(ValueError, match="apgd-t.*at least 10 classes, but the model has 8"):
        advjax.evaluation.autoattack(
            logits_fn, x, y, eps=0.1, key=KEY, version="custom", attacks=attacks
        )
    assert calls["concrete"] == 0
    three = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="standard ensemble.*at least 4 classes"):
        advjax.evaluation.autoattack(lambda v: v @ three, x, jnp.array([0, 1, 2]), eps=0.1, key=KEY)


# 3. A model whose input gradient is NaN -----------------------------------------------


def _nan_gradient_models():
    rng = np.random.default_rng(3)
    w = jnp.asarray(40 * rng.normal(size=(20, 5)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(100, 20)), jnp.float32)
    unstable = lambda v: jnp.log(jax.nn.softmax(v @ w))  # noqa: E731
    stable = lambda v: jax.nn.log_softmax(v @ w)  # noqa: E731
    y = jnp.argmax(stable(x), -1)
    return unstable, stable, x, y


@pytest.mark.parametrize("build", [lambda: advjax.fgsm(0.1), lambda: advjax.pgd(0.1, steps=10)])
def test_nan_gradients_give_no_step_and_finite_points(build):
    unstable, _, x, y = _nan_gradient_models()
    grads = jax.grad(lambda v: jnp.sum(advjax.losses.ce(unstable(v), y)))(x)
    assert np.mean(~np.all(np.isfinite(np.asarray(grads)), -1)) > 0.5  # the premise
    for call in (build(), jax.jit(build(), static_argnums=0)):
        x_adv = np.asarray(call(unstable, x, y, key=KEY))
        assert np.all(np.isfinite(x_adv))
        assert np.abs(x_adv - np.asarray(x)).max() <= 0.1 * (1 + 1e-6)


def test_evaluate_never_counts_a_nan_point_and_reports_nan_gradients():
    unstable, stable, x, y = _nan_gradient_models()
    attacks = {"fgsm": advjax.fgsm, "pgd": lambda e: advjax.pgd(e, steps=10)}
    report = advjax.evaluation.evaluate(unstable, x, y, attacks, [0.1], key=KEY)
    reference = advjax.evaluation.evaluate(stable, x, y, attacks, [0.1], key=KEY)
    assert report.clean_accuracy == reference.clean_accuracy == 1.0
    # No step where the gradient is NaN: robust accuracy can only be higher than the
    # stable twin's (never the 0.01 of counting NaN images as broken).
    for name in attacks:
        assert report.robust_accuracy(name, 0.1) >= reference.robust_accuracy(name, 0.1)
        assert sum(sum(c) for c in report.attacks[0].rejected.values()) == 0
    count = report.diagnostics["non_finite_gradient_examples"]
    assert count > 50
    assert any(f"{count} of 100 examples have a NaN" in w for w in report.warnings)
    assert not any("randomized" in w for w in report.warnings)


def test_a_custom_attack_returning_nan_is_not_counted():
    _, stable, x, y = _nan_gradient_models()

    def nan_attack(logits_fn, x, y, *, key):
        return jnp.full_like(x, jnp.nan)

    report = advjax.evaluation.evaluate(stable, x, y, {"nan": lambda e: nan_attack}, [0.1], key=KEY)
    assert report.robust_accuracy("nan", 0.1) == report.clean_accuracy
    assert report.attacks[0].rejected["non_finite"] == [100]
    assert any("not counted" in w for w in report.warnings)


# 4. One-hot labels: one rule everywhere ----------------------------------------------


@pytest.mark.parametrize("n, k", [(8, 10), (10, 10)])
def test_one_hot_labels_match_integer_labels_everywhere(n, k):
    rng = np.random.default_rng(4)
    w = jnp.asarray(rng.normal(size=(6, k)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(n, 6)), jnp.float32)
    logits_fn = lambda v: v @ w  # noqa: E731
    y = jnp.argmax(logits_fn(x), -1)
    one_hot = jax.nn.one_hot(y, k)
    attacks = advjax.evaluation.standard_attacks(0.1, steps=5, targets=3, queries=20)
    run = lambda labels: advjax.evaluation.autoattack(  # noqa: E731
        logits_fn, x, labels, eps=0.1, key=KEY, version="custom", attacks=attacks
    )
    robust = run(y).robust
    np.testing.assert_array_equal(robust, run(one_hot).robust)
    np.testing.assert_array_equal(robust, run(one_hot.astype(jnp.int32)).robust)
    report = lambda labels: advjax.evaluation.evaluate(  # noqa: E731
        logits_fn, x, labels, {"fgsm": advjax.fgsm}, [0.1], key=KEY
    )
    assert report(y).attacks[0].robust_accuracy == report(one_hot).attacks[0].robust_accuracy
    np.testing.assert_array_equal(
        advjax.pgd(0.1, steps=3)(logits_fn, x, y, key=KEY),
        advjax.pgd(0.1, steps=3)(logits_fn, x, one_hot, key=KEY),
    )


def test_labels_that_are_not_one_hot_rows_are_refused():
    w = jnp.ones((4, 3))
    x = jnp.full((2, 4), 0.5)
    for bad in (jnp.array([[1.0, 1.0, 0.0]] * 2), jnp.array([[0.5, 0.5]] * 2), jnp.array([0, 3])):
        with pytest.raises((ValueError, TypeError), match="label|classes"):
            advjax.pgd(0.1, steps=2)(lambda v: v @ w, x, bad, key=KEY)


# 5. Division by an interval that contains 0 -------------------------------------------


def test_division_by_an_interval_containing_zero_is_unbounded_not_nan():
    bounds = advjax.certify.interval_bounds(lambda x: x[..., 0] / (x[..., 1] - 0.5))
    lo, hi = bounds(jnp.zeros(2), jnp.ones(2))
    assert float(lo) == -np.inf and float(hi) == np.inf


def test_infinite_boxes_and_zero_widths_stay_sound_and_nan_free():
    w = jnp.array([[1.0, 0.0, -2.0], [0.0, 3.0, 0.5]])
    f = lambda x: jnp.maximum(x @ w, 0.0) * jnp.array([0.0, 1.0, 2.0])  # noqa: E731
    lower = jnp.array([-jnp.inf, 0.25])
    upper = jnp.array([0.5, 0.25])
    lo, hi = advjax.certify.interval_bounds(f)(lower, upper)
    assert not np.any(np.isnan(np.asarray(lo))) and not np.any(np.isnan(np.asarray(hi)))
    samples = np.stack([np.linspace(-1e6, 0.5, 101), np.full(101, 0.25)], -1)
    values = np.asarray(jax.vmap(f)(jnp.asarray(samples, jnp.float32)))
    assert np.all(values >= np.asarray(lo) - 1e-5) and np.all(values <= np.asarray(hi) + 1e-5)


# 6. Out-of-range inputs under jax.jit -------------------------------------------------


def _normalised_batch():
    rng = np.random.default_rng(6)
    images = rng.uniform(size=(16, 8)).astype(np.float32)
    x = jnp.asarray((images - 0.1307) / 0.3081)  # mean/std-normalised: outside [0, 1]
    w = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
    return (lambda v: v @ w), x, jnp.zeros(16, jnp.int32)


def test_out_of_range_input_is_the_same_clear_error_with_and_without_jit():
    logits_fn, x, y = _normalised_batch()
    attack = advjax.fgsm(0.0)
    with pytest.raises(InvalidInputError, match="outside the declared valid range"):
        attack(logits_fn, x, y, key=KEY)
    with pytest.raises(Exception, match="outside the declared valid range"):
        jax.jit(attack, static_argnums=0)(logits_fn, x, y, key=KEY).block_until_ready()


def test_nan_input_and_negative_traced_epsilon_raise_under_jit():
    logits_fn, x, y = _normalised_batch()
    x01 = jnp.clip(x, 0, 1).at[0, 0].set(jnp.nan)
    with pytest.raises(Exception, match="non-finite"):
        jax.jit(advjax.pgd(0.1, steps=2), static_argnums=0)(logits_fn, x01, y, key=KEY)
    clean = jnp.clip(x, 0, 1)

    @jax.jit
    def with_budget(eps):
        return advjax.pgd(eps, steps=2, step_size=0.01)(logits_fn, clean, y, key=KEY)

    assert with_budget(0.1).shape == clean.shape
    with pytest.raises(Exception, match="eps must be >= 0 and finite"):
        with_budget(-0.1).block_until_ready()


# 7. AutoAttack with a custom input range ----------------------------------------------


def test_autoattack_passes_its_range_down_and_checks_both_ends():
    attacks = _version_attacks("standard", 0.1, "linf", 10, -1.0, 2.0)
    for attack in attacks.values():
        assert (attack.constraints.clip_min, attack.constraints.clip_max) == (-1.0, 2.0)
    rng = np.random.default_rng(7)
    w = jnp.asarray(rng.normal(size=(5, 10)), jnp.float32)
    x = jnp.asarray(rng.uniform(-1.0, 2.0, size=(4, 5)), jnp.float32)
    y = jnp.zeros(4, jnp.int32)
    with pytest.raises(InvalidInputError, match="outside the declared valid range"):
        advjax.evaluation.autoattack(
            lambda v: v @ w, x + 0.5, y, eps=0.1, key=KEY, clip_min=-1.0, clip_max=2.0
        )
    with pytest.raises(ValueError, match=r"built for the range \[0.0, 1.0\]"):
        advjax.evaluation.autoattack(
            lambda v: v @ w,
            x,
            y,
            eps=0.1,
            key=KEY,
            clip_min=-1.0,
            clip_max=2.0,
            version="custom",
            attacks={"apgd": advjax.apgd(0.1)},
        )


def test_autoattack_rejects_points_outside_the_box():
    rng = np.random.default_rng(8)
    w = jnp.asarray(rng.normal(size=(5, 10)), jnp.float32)
    x = jnp.asarray(rng.uniform(0.95, 1.0, size=(6, 5)), jnp.float32)
    logits_fn = lambda v: v @ w  # noqa: E731
    y = jnp.argmax(logits_fn(x), -1)

    def escapes_the_box(logits_fn, x, y, *, key):
        return x + 0.09  # inside the ball, past the upper end of the range

    result = advjax.evaluation.autoattack(
        logits_fn, x, y, eps=0.1, key=KEY, version="custom", attacks={"out": escapes_the_box}
    )
    assert result.robust_accuracy == result.clean_accuracy == 1.0
    assert result.per_attack["out"]["rejected"] == {
        "non_finite": 0,
        "outside_ball": 0,
        "outside_box": 6,
    }


def _single_example_pgd(logits_fn):
    attack = advjax.pgd(0.1, steps=2)
    return lambda xi, yi, k: attack(logits_fn, xi[None], yi[None], key=k)[0]


def test_a_vmapped_attack_checks_the_batch_once_and_names_a_failing_example():
    w = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    one = _single_example_pgd(lambda x: x.reshape(x.shape[0], -1) @ w)

    def callbacks(batch):
        x = jnp.full((batch, 2, 2, 1), 0.5)
        y = jnp.zeros(batch, jnp.int32)
        keys = jax.random.split(jax.random.key(0), batch)
        return str(jax.make_jaxpr(jax.vmap(one))(x, y, keys)).count("callback")

    assert 0 < callbacks(4) == callbacks(64)  # not one host callback per example
    x = jnp.full((6, 2, 2, 1), 0.5).at[4].set(3.0)
    y = jnp.zeros(6, jnp.int32)
    keys = jax.random.split(jax.random.key(0), 6)
    with pytest.raises(Exception, match=r"lie in \[3, 3\], outside the declared valid range"):
        jax.block_until_ready(jax.jit(jax.vmap(one))(x, y, keys))
    good = jax.jit(jax.vmap(one))(x.at[4].set(0.5), y, keys)
    assert bool(jnp.all(jnp.abs(good - 0.5) <= 0.1 + 1e-6))
