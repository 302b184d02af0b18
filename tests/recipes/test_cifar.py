"""The CIFAR-10 recipes: the papers' settings, and the GPU reproduction command run tiny on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from advjax import cli, recipes


def _tiny_cifar_folder(root, per_class=4):
    """32x32 colour images in train|test/<class>/, each class a different mean colour."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(("airplane", "automobile", "bird")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (32, 32, 3)) + 60 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_the_recipes_carry_their_papers_settings():
    fast = recipes.get_recipe("fast_at_cifar10").config()
    assert (fast.model, fast.epochs, fast.batch_size, fast.lr_schedule) == (
        "preact_resnet18",
        15,
        128,
        "triangular",
    )
    assert np.isclose(fast.eps, 8 / 255) and np.isclose(fast.alpha, 10 / 255)
    assert (fast.lr, fast.weight_decay, fast.precision, fast.augment) == (
        0.2,
        5e-4,
        "bf16",
        "crop_flip",
    )
    assert (fast.eval_steps, fast.eval_restarts, fast.eval_examples) == (50, 10, 10_000)
    assert "autoattack" in fast.eval_attacks
    trades = recipes.get_recipe("trades_cifar10").config()
    assert (trades.model, trades.beta, trades.eps, trades.train_step_size) == (
        "wide_resnet_34_10",
        6.0,
        0.031,
        0.007,
    )
    pgd_at = recipes.get_recipe("pgd_at_cifar10").config()
    assert (pgd_at.train_steps, pgd_at.epochs, pgd_at.model) == (10, 200, "preact_resnet18")
    assert "83.81% clean, 46.06% PGD-50x10" in recipes.get_recipe("fast_at_cifar10").paper


@pytest.mark.slow
def test_the_gpu_command_runs_tiny_on_cpu(tmp_path, capsys):
    """``advjax train fast_at_cifar10``: PreAct ResNet-18, bf16, crops and flips, PGD eval."""
    folder = _tiny_cifar_folder(tmp_path / "images")
    out = tmp_path / "run"
    argv = ["train", "fast_at_cifar10", "--data", "image-folder", "--data-dir", str(folder)]
    argv += ["--out", str(out), "--no-progress", "--set", "batch_size=4", "epochs=1"]
    argv += ["monitor_examples=4", "eval_examples=4", "eval_attacks=[pgd]", "eval_steps=2"]
    argv += ["eval_restarts=1", "eval_step_size=0"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "preact_resnet18"
    assert config["recipe"]["config"]["precision"] == "bf16"
    assert config["recipe"]["config"]["augment"] == "crop_flip"
    assert config["input_shape"] == [32, 32, 3] and config["num_classes"] == 3
    assert list((out / "eval").glob("pgd-linf-*/report.json"))
