"""Training: the generic step, adversarial training, checkpoints and exact resume."""

from __future__ import annotations

import json

import chex
import jax
import numpy as np
import optax
import pytest

import advjax
from advjax import data, models, train


def _small_setup(model_name="fast_mnist", n=400, augment=None):
    train_set = data.load_embedded_mnist("train").subset(np.arange(n))
    model = models.get_model(model_name)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=optax.adam(optax.linear_schedule(1e-3, 1e-4, 40)),
    )
    objective = train.pgd_at(
        lambda eps: advjax.pgd(eps, steps=3, step_size=eps / 2, keep_best=False),
        optax.linear_schedule(0.0, 0.3, 20),
    )
    return train_set, state, train.make_step(objective, augment=augment)


def _fit(state, train_set, step, tmp_path, **kwargs):
    return train.fit(
        state,
        train_set,
        step,
        epochs=3,
        batch_size=50,
        key=jax.random.key(5),
        checkpoint_dir=tmp_path,
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("augment", [None, data.random_crop_flip], ids=["plain", "crop_flip"])
def test_interrupted_and_resumed_training_is_bitwise_identical(tmp_path, augment):
    """With augmentation too: its random stream derives from the step counter, like the attack's."""
    train_set, state, step = _small_setup(augment=augment)
    straight = _fit(state, train_set, step, tmp_path / "straight")

    train_set, state, step = _small_setup(augment=augment)
    interrupted = _fit(state, train_set, step, tmp_path / "resumed", max_steps=11)
    assert int(interrupted.state.step) == 11
    # A fresh process would rebuild everything from scratch: so do we.
    train_set, fresh_state, step = _small_setup(augment=augment)
    resumed = _fit(fresh_state, train_set, step, tmp_path / "resumed")
    assert int(resumed.state.step) == int(straight.state.step) == 24
    chex.assert_trees_all_equal(straight.state.params, resumed.state.params)
    chex.assert_trees_all_equal(straight.state.opt_state, resumed.state.opt_state)
    assert [r["train/loss"] for r in straight.history] == [r["train/loss"] for r in resumed.history]


def test_batchnorm_statistics_update_in_training_and_not_in_attacks(tmp_path):
    train_set = data.load_embedded_mnist("train").subset(np.arange(64))
    model = models.PreActResNet18(stage_sizes=(1, 1, 1, 1))
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.sgd(0.01),
    )
    before = jax.tree.map(np.asarray, state.batch_stats)
    x = data.to_device(train_set.images[:8])
    y = train_set.labels[:8]
    advjax.pgd(0.1, steps=2)(train.eval_logits(state), x, y, key=jax.random.key(0))
    chex.assert_trees_all_equal(before, jax.tree.map(np.asarray, state.batch_stats))
    step = train.make_step(train.pgd_at(lambda e: advjax.pgd(e, steps=2, keep_best=False), 0.1))
    new_state, metrics = step(state, (x, jax.numpy.asarray(y)), jax.random.key(1))
    changed = jax.tree.leaves(
        jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), before, new_state.batch_stats)
    )
    assert any(changed)
    assert set(metrics) >= {"loss", "adv_acc", "clean_acc", "eps"}


def test_metrics_jsonl_and_best_checkpoint(tmp_path):
    train_set, state, step = _small_setup(n=200)
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {"clean_acc": 0.5, "adv_acc": float(len(calls))}

    result = train.fit(
        state,
        train_set,
        step,
        epochs=2,
        batch_size=50,
        key=jax.random.key(0),
        eval_fn=eval_fn,
        checkpoint_dir=tmp_path / "ckpt",
        metrics_path=tmp_path / "metrics.jsonl",
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["eval/adv_acc"] == 2.0 and "train/adv_acc" in records[0]
    assert result.best["epoch"] == 2
    assert train.list_checkpoints(tmp_path / "ckpt" / "best") == [8]
    assert train.read_meta(tmp_path / "ckpt" / "best")["epoch"] == 2
    assert train.list_checkpoints(tmp_path / "ckpt" / "steps") == [4, 8]


def test_orbax_keeps_the_newest_steps_only(tmp_path):
    _, state, _ = _small_setup(n=100)
    for step in (1, 2, 3, 4):
        train.save_checkpoint(tmp_path, state.replace(step=step), {"at": step}, keep=2)
    assert train.list_checkpoints(tmp_path) == [3, 4]
    assert train.read_meta(tmp_path) == {"at": 4}
    assert train.read_meta(tmp_path, step=3) == {"at": 3}
    restored, meta = train.restore_checkpoint(tmp_path, state, step=3)
    assert int(restored.step) == 3 and meta == {"at": 3}


def test_incomplete_or_missing_checkpoints_are_never_restored(tmp_path):
    _, state, _ = _small_setup(n=100)
    train.save_checkpoint(tmp_path, state.replace(step=5), {"epoch": 0})
    # what orbax leaves behind when a save is interrupted before its final rename
    (tmp_path / "9.orbax-checkpoint-tmp-1234").mkdir()
    assert train.latest_checkpoint(tmp_path) == 5
    assert int(train.restore_checkpoint(tmp_path, state)[0].step) == 5
    with pytest.raises(train.CheckpointError, match="no checkpoint of step 9"):
        train.restore_checkpoint(tmp_path, state, step=9)
    with pytest.raises(train.CheckpointError, match="does not exist"):
        train.restore_checkpoint(tmp_path / "nowhere", state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(train.CheckpointError, match="no complete checkpoint"):
        train.restore_checkpoint(tmp_path / "empty", state)


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    _, state, _ = _small_setup(n=100)
    train.save_checkpoint(tmp_path, state, {"epoch": 0})
    _, other, _ = _small_setup(model_name="mlp", n=100)
    with pytest.raises(train.CheckpointError, match="different model or optimizer"):
        train.restore_checkpoint(tmp_path, other)


def test_bad_clean_weight():
    with pytest.raises(ValueError, match="clean_weight"):
        train.pgd_at(lambda e: advjax.pgd(e), 0.3, clean_weight=1.5)
