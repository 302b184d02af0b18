"""Robustness evaluation and its reports."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import advjax
from advjax import evaluation as adv_eval

EPSILONS = [0.0, 0.05, 0.1, 0.2, 0.3, 1.0]


@pytest.fixture(scope="module")
def report(trained_mnist, mnist_test_batch):
    logits_fn, _, _ = trained_mnist
    x, y = mnist_test_batch
    attacks = {
        "fgsm": lambda e: advjax.fgsm(e),
        "pgd": lambda e: advjax.pgd(e, steps=10, restarts=2),
    }
    return adv_eval.evaluate(
        logits_fn, x, y, attacks, EPSILONS, key=jax.random.key(0), batch_size=128
    )


def test_clean_accuracy_matches_a_direct_count(report, trained_mnist, mnist_test_batch):
    logits_fn, _, _ = trained_mnist
    x, y = mnist_test_batch
    direct = float(np.mean(np.argmax(np.asarray(logits_fn(x)), -1) == y))
    assert report.clean_accuracy == pytest.approx(direct)
    assert report.num_examples == len(x)


def test_robust_accuracy_never_rises_with_epsilon(report):
    for result in [*report.attacks, report.worst_case]:
        accuracies = result.robust_accuracy
        assert all(b <= a for a, b in zip(accuracies, accuracies[1:], strict=False)), result.name
        assert accuracies[0] <= report.clean_accuracy


def test_eps_zero_keeps_clean_accuracy_and_eps_one_breaks_everything(report):
    assert report.robust_accuracy("pgd", 0.0) == pytest.approx(report.clean_accuracy)
    assert report.robust_accuracy("pgd", 1.0) == 0.0
    assert report.robust_accuracy("worst_case", 1.0) == 0.0


def test_worst_case_is_never_above_any_attack(report):
    for result in report.attacks:
        for worst, single in zip(
            report.worst_case.robust_accuracy, result.robust_accuracy, strict=True
        ):
            assert worst <= single


def test_pgd_not_weaker_than_fgsm(report):
    for eps in EPSILONS:
        assert report.robust_accuracy("pgd", eps) <= report.robust_accuracy("fgsm", eps)


def test_success_rate_and_norms_are_consistent(report):
    pgd = next(r for r in report.attacks if r.name == "pgd")
    correct = report.clean_accuracy
    for i, eps in enumerate(report.epsilons):
        assert pgd.success_rate[i] * correct == pytest.approx(correct - pgd.robust_accuracy[i])
        if not np.isnan(pgd.median_norm[i]):
            assert 0.0 < pgd.median_norm[i] <= eps + 1e-5
            assert pgd.mean_norm[i] <= eps + 1e-5


def test_epsilon_sweep_matches_one_attack_at_a_time(trained_mnist, mnist_test_batch):
    logits_fn, _, _ = trained_mnist
    x, y = mnist_test_batch
    x, y = x[:64], y[:64]
    sweep = adv_eval.evaluate(
        logits_fn,
        x,
        y,
        {"pgd": lambda e: advjax.pgd(e, steps=5)},
        [0.05, 0.1],
        key=jax.random.key(3),
    )
    for eps in (0.05, 0.1):
        alone = adv_eval.evaluate(
            logits_fn, x, y, {"pgd": lambda e: advjax.pgd(e, steps=5)}, [eps], key=jax.random.key(3)
        )
        # Cumulative counting can only lower the sweep's figure below the single run's.
        assert sweep.robust_accuracy("pgd", eps) <= alone.robust_accuracy("pgd", eps)


def test_budget_zero_is_not_attacked_and_changes_no_other_budget(trained_mnist, mnist_test_batch):
    logits_fn, _, _ = trained_mnist
    x, y = mnist_test_batch
    x, y = x[:64], y[:64]

    def shove(eps):  # moves every pixel by 0.1 whatever the budget: outside the ball at eps 0
        return lambda f, xb, yb, *, key: jax.numpy.clip(xb + 0.1, 0.0, 1.0)

    attacks = {"shove": shove, "pgd": lambda e: advjax.pgd(e, steps=5)}
    with_zero = adv_eval.evaluate(logits_fn, x, y, attacks, [0.0, 0.1], key=jax.random.key(3))
    without = adv_eval.evaluate(logits_fn, x, y, attacks, [0.1], key=jax.random.key(3))
    shoved = next(r for r in with_zero.attacks if r.name == "shove")
    assert shoved.robust_accuracy[0] == with_zero.clean_accuracy
    assert all(counts[0] == 0 for counts in shoved.rejected.values())  # never attacked
    np.testing.assert_array_equal(with_zero.robust_examples[1], without.robust_examples[0])
    for a, b in zip(with_zero.attacks, without.attacks, strict=True):
        assert a.robust_accuracy[1:] == b.robust_accuracy


def test_report_files(report, tmp_path):
    json_path, md_path, png_path = adv_eval.write_report(report, tmp_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["epsilons"] == pytest.approx(EPSILONS)
    assert [a["name"] for a in loaded["attacks"]] == ["fgsm", "pgd"]
    text = md_path.read_text()
    assert "| pgd |" in text and "clean accuracy" in text and "worst_case" in text
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plotting_leaves_the_matplotlib_backend_and_pyplot_alone(report, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    original = matplotlib.get_backend()
    matplotlib.use("svg")  # a user's choice, not the Agg that the old code forced
    try:
        figures = plt.get_fignums()
        adv_eval.plot_robustness_curve(report, tmp_path / "curve.png")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures
    finally:
        matplotlib.use(original)
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_bad_evaluation_inputs(trained_mnist, mnist_test_batch):
    logits_fn, _, _ = trained_mnist
    x, y = mnist_test_batch
    attacks = {"fgsm": lambda e: advjax.fgsm(e)}
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="must be >= 0"):
        adv_eval.evaluate(logits_fn, x, y, attacks, [-0.1, 0.1], key=key)
    with pytest.raises(ValueError, match="strictly increasing"):
        adv_eval.evaluate(logits_fn, x, y, attacks, [0.2, 0.1], key=key)
    with pytest.raises(ValueError, match="batch sizes differ"):
        adv_eval.evaluate(logits_fn, x, y[:10], attacks, [0.1], key=key)
    with pytest.raises(ValueError, match="outside the declared valid range"):
        adv_eval.evaluate(logits_fn, x * 255, y, attacks, [0.1], key=key)
    with pytest.raises(ValueError, match="attacks is empty"):
        adv_eval.evaluate(logits_fn, x, y, {}, [0.1], key=key)
    with pytest.raises(ValueError, match="unknown norm"):
        adv_eval.evaluate(logits_fn, x, y, attacks, [0.1], key=key, norm="l5")
