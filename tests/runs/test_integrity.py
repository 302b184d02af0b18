"""Integrity of runs: exact resume, SHA-256 checks of checkpoints and models, clear errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import advjax
from advjax import cli

TINY = [
    "epochs=2",
    "train_size=300",
    "model=mlp",
    "monitor_examples=50",
    "checkpoint_every=2",
    "train_steps=2",
]
# 300 images at batch 100: 3 steps per epoch, 6 in all; checkpoints every 2 steps


def _train(out: Path, *extra: str) -> int:
    return cli.main(
        ["train", "pgd_at", "--out", str(out), "--no-progress", "--no-eval", "--set", *TINY, *extra]
    )


def _digests(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["model_digests"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    assert _train(out) == 0
    return out


def _flip_a_byte(directory: Path) -> Path:
    """Flips one bit in the middle of the largest data file below ``directory``."""
    files = [p for p in directory.rglob("*") if p.is_file() and "/d/" in str(p)]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def test_interrupted_then_resumed_training_is_bit_identical(uninterrupted, tmp_path):
    out = tmp_path / "split"
    assert _train(out, "--max-steps", "4") == 0
    assert not (out / "model").exists()
    assert (
        cli.main(["train", "pgd_at", "--out", str(out), "--resume", "--no-progress", "--no-eval"])
        == 0
    )
    assert _digests(out) == _digests(uninterrupted)


def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(uninterrupted, tmp_path):
    out = tmp_path / "damaged"
    assert _train(out, "--max-steps", "5") == 0
    steps_dir = out / "checkpoints" / "train" / "steps"
    newest = advjax.train.latest_checkpoint(steps_dir)
    assert newest == 5 and advjax.train.list_checkpoints(steps_dir) == [4, 5]
    _flip_a_byte(steps_dir / str(newest))
    with pytest.raises(advjax.train.CheckpointError, match=f"step {newest}"):
        advjax.train.restore_checkpoint(steps_dir, _state_like(out), newest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            cli.main(
                ["train", "pgd_at", "--out", str(out), "--resume", "--no-progress", "--no-eval"]
            )
            == 0
        )
    messages = [str(w.message) for w in caught if "damaged checkpoint" in str(w.message)]
    assert messages and "resuming from step 4" in messages[0] and f"step {newest}" in messages[0]
    assert _digests(out) == _digests(uninterrupted)


def _state_like(out: Path):
    config = advjax.recipes.configure(advjax.recipes.get_recipe("pgd_at").config, TINY)
    train_set = advjax.recipes.training_data(config)
    tx = advjax.recipes.make_optimizer(config, 6)
    return advjax.recipes.initial_state(config, train_set, tx, seed=0, carry=False)


def test_a_flipped_bit_in_a_saved_model_is_an_error_naming_it(uninterrupted, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    advjax.load_run(copy)  # intact
    _flip_a_byte(copy / "model")
    with pytest.raises(advjax.RunError, match=r"model.*(SHA-256|damaged)"):
        advjax.load_run(copy)


def test_a_model_factory_outside_the_zoo_round_trips_and_a_missing_one_is_clear(tmp_path):
    import jax

    from advjax import models

    model = models.get_model("mlp", hidden=(8,))
    variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
    advjax.runs.save_run_model(
        tmp_path,
        variables,
        model_factory="advjax.models:get_model",
        model_kwargs={"name": "mlp", "hidden": [8]},
        input_shape=(4, 4, 1),
    )
    assert advjax.load_run(tmp_path).config["model"]["factory"] == "advjax.models:get_model"
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["factory"] = "my_lab.nets:wide_net"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        advjax.RunError, match="cannot import the model factory 'my_lab.nets:wide_net'"
    ):
        advjax.load_run(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.pop("format"), "run format None"),
        (lambda c: c.update(format=2), "run format 2"),
        (lambda c: c.pop("model_digests"), "lacks its saved model"),
    ],
)
def test_configs_of_other_formats_or_incomplete_runs_are_refused(
    uninterrupted, tmp_path, mutate, message
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    config = json.loads((copy / "config.json").read_text())
    mutate(config)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(advjax.RunError, match=message):
        advjax.load_run(copy)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(advjax.RunError, match="not JSON"):
        advjax.load_run(copy)
