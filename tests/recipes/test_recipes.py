"""Every recipe trains (tiny settings) into a run that loads and re-evaluates identically."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import advjax
from advjax import recipes, runs

COMMON = [
    "epochs=1",
    "train_size=200",
    "model=mlp",
    "monitor_examples=50",
    "eval_examples=50",
    "eval_steps=3",
    "eval_restarts=1",
    "eval_attacks=[pgd]",
    "eval_step_size=0",
]
EXTRA = {
    "ibp": ["warmup=0", "ramp_epochs=1", "certify_examples=20"],
    "crown_ibp": ["warmup=0", "ramp_epochs=0.5", "certify_examples=20"],
    "gaussian_noise": ["monitor_examples=0", "certify_examples=2", "smoothing_samples=100"],
    "free_at": ["replays=2"],
    # the CIFAR-10 recipes' objectives, augmentation and (fast AT) bf16 on MNIST-sized inputs;
    # tests/recipes/test_cifar.py runs their real model on 32x32 colour images
    **dict.fromkeys(
        ["fast_at_cifar10", "pgd_at_cifar10", "trades_cifar10"], ["data=mnist-embedded"]
    ),
}


# One recipe per code path runs by default (plain, PGD, TRADES, free AT's replays, certified
# training with both bounds, smoothing, bf16 with augmentation); the others differ only in their
# objective (unit-tested in tests/train) and run end to end with ``-m slow``.
DEFAULT_RECIPES = {
    "standard",
    "pgd_at",
    "trades",
    "free_at",
    "crown_ibp",
    "gaussian_noise",
    "fast_at_cifar10",
}


@pytest.mark.parametrize(
    "name",
    [
        name if name in DEFAULT_RECIPES else pytest.param(name, marks=pytest.mark.slow)
        for name in sorted(recipes.RECIPES)
    ],
)
def test_recipe_run_loads_and_reevaluates_identically(name, tmp_path):
    outcome = recipes.train_recipe(
        name, tmp_path / name, overrides=COMMON + EXTRA.get(name, []), progress=False
    )
    assert outcome.finished
    run = advjax.load_run(outcome.run_dir)
    assert run.config["recipe"]["name"] == name
    config = outcome.config
    assert len(outcome.evaluations) == len(config.eval_attacks)
    assert len(outcome.certifications) == len(recipes.get_recipe(name).certify)
    for report in outcome.certifications:  # bounds are checked against PGD; smoothing is not
        smoothing = report["spec"]["method"] == "smoothing"
        assert report["summary"]["consistent"] is (None if smoothing else True)
    if not outcome.evaluations:
        return
    first = outcome.evaluations[0]
    spec = recipes.recipe_eval_spec(config, first["spec"]["attack"])
    stored = runs.read_masks(first)["robust"]
    shutil.rmtree(first["directory"])
    again = runs.evaluate_run(run, spec)
    assert not again["reused"]
    np.testing.assert_array_equal(runs.read_masks(again)["robust"], stored)
    for key in ("robust_accuracy", "success_rate"):
        assert again["report"]["worst_case"][key] == first["report"]["worst_case"][key]


def test_the_default_recipes_exist():
    assert DEFAULT_RECIPES <= set(recipes.RECIPES)


def test_recipes_name_their_paper_and_configs_use_paper_names():
    for recipe in recipes.RECIPES.values():
        assert recipe.paper and recipe.description
    assert recipes.get_recipe("trades").config().beta == 6.0
    assert recipes.get_recipe("crown_ibp").config().beta_start == 1.0  # CROWN-IBP's beta: 1 -> 0
    assert recipes.get_recipe("pgd_at_awp").config().awp_gamma == 0.01
    assert recipes.get_recipe("trades_awp").config().awp_gamma == 0.005
