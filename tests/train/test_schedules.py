"""Schedules, curricula, early stopping, TensorBoard logs and mixed precision."""

from __future__ import annotations

import json
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advjax import data, train

SHAPE = (6, 6, 1)


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1))))


def _state(apply_wrapper=None, tx=None):
    model = _Net()
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    apply_fn = model.apply if apply_wrapper is None else apply_wrapper(model.apply)
    return train.TrainState.create(
        apply_fn=apply_fn, params=variables["params"], tx=tx or optax.sgd(0.1)
    )


def _dataset(n=40):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    return data.Dataset(images, (np.arange(n) % 3).astype(np.int32), "toy", 3)


def test_learning_rate_schedules():
    lr = train.piecewise_lr(0.1, 100, milestones=(0.5, 0.75))
    np.testing.assert_allclose([lr(0), lr(49), lr(50), lr(80)], [0.1, 0.1, 0.01, 0.001], rtol=1e-5)
    tri = train.triangular_lr(2.0, 10, peak_at=0.4)
    np.testing.assert_allclose([tri(0), tri(2), tri(4), tri(10)], [0.0, 1.0, 2.0, 0.0], atol=1e-6)
    cyc = train.cyclic_lr(0.0, 1.0, 10)
    np.testing.assert_allclose([cyc(0), cyc(5), cyc(10), cyc(15)], [0.0, 1.0, 0.0, 1.0])
    cos = train.cosine_lr(1.0, 10, warmup_steps=2)
    assert float(cos(0)) == 0.0 and float(cos(2)) == pytest.approx(1.0)
    assert float(cos(10)) == pytest.approx(0.0, abs=1e-6)


def test_epsilon_ramps():
    linear = train.epsilon_ramp(0.3, 10, start_step=5)
    np.testing.assert_allclose([linear(0), linear(5), linear(10), linear(99)], [0, 0, 0.15, 0.3])
    smooth = train.epsilon_ramp(0.3, 10, kind="smooth")
    values = np.array([float(smooth(s)) for s in range(12)])
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.3)
    assert np.all(np.diff(values) >= 0) and values[1] < 0.3 * 0.1  # slow start
    assert float(jax.jit(smooth)(jnp.asarray(5))) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="kind"):
        train.epsilon_ramp(0.3, 10, kind="cubic")


def test_curriculum_compiles_once_per_stage():
    steps_at = train.curriculum([(0, 1), (2, 3)])
    assert [steps_at(s) for s in range(4)] == [1, 1, 3, 3]
    built = []

    def build(k):
        built.append(k)
        return train.make_step(train.standard())

    step = train.staged_step(build, steps_at)
    state = _state()
    x, y = jnp.zeros((4, *SHAPE)), jnp.zeros(4, jnp.int32)
    for _ in range(4):
        state, _ = step(state, (x, y), jax.random.key(0))
    assert built == [1, 3] and int(state.step) == 4
    with pytest.raises(ValueError, match="step 0"):
        train.curriculum([(5, 1)])


def test_early_stopping_rules():
    history = [{"eval/adv_acc": a} for a in (0.5, 0.7, 0.69, 0.68)]
    assert train.EarlyStopping(patience=3).check(history) is None
    assert "did not improve" in train.EarlyStopping(patience=2).check(history)
    assert train.EarlyStopping(max_drop=0.2).check(history) is None
    assert "fell" in train.EarlyStopping(max_drop=0.2).check([*history, {"eval/adv_acc": 0.1}])
    with pytest.raises(KeyError, match="eval_fn"):
        train.EarlyStopping(patience=1).check([{"train/loss": 1.0}])
    with pytest.raises(ValueError, match="patience"):
        train.EarlyStopping()


def test_fit_stops_early_and_keeps_the_best_state(tmp_path):
    scores = iter([0.5, 0.9, 0.2, 0.95])
    result = train.fit(
        _state(),
        _dataset(),
        train.make_step(train.standard()),
        epochs=4,
        batch_size=10,
        key=jax.random.key(0),
        eval_fn=lambda state: {"adv_acc": next(scores), "step": float(state.step)},
        early_stopping=train.EarlyStopping(max_drop=0.5),
        keep_best_state=True,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert len(result.history) == 3 and "fell" in result.stopped
    assert result.best["epoch"] == 2 and int(result.best_state.step) == 8
    assert int(result.state.step) == 12
    # a resumed run sees the same history and does not train on
    again = train.fit(
        _state(),
        _dataset(),
        train.make_step(train.standard()),
        epochs=4,
        batch_size=10,
        key=jax.random.key(0),
        eval_fn=lambda state: {"adv_acc": 1.0},
        early_stopping=train.EarlyStopping(max_drop=0.5),
        keep_best_state=True,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert again.stopped == result.stopped and int(again.state.step) == 12
    assert int(again.best_state.step) == 8


def test_tensorboard_logs_when_installed(tmp_path):
    pytest.importorskip("tensorboardX")
    train.fit(
        _state(),
        _dataset(),
        train.make_step(train.standard()),
        epochs=1,
        batch_size=10,
        key=jax.random.key(0),
        tensorboard_dir=tmp_path / "tb",
        progress=False,
    )
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_tensorboard_without_tensorboardx_warns_and_trains(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import now raises ImportError
    with pytest.warns(UserWarning, match="tensorboardX"):
        result = train.fit(
            _state(),
            _dataset(),
            train.make_step(train.standard()),
            epochs=1,
            batch_size=10,
            key=jax.random.key(0),
            tensorboard_dir=tmp_path / "tb",
            metrics_path=tmp_path / "deep" / "metrics.jsonl",
            progress=False,
        )
    assert int(result.state.step) == 4
    assert json.loads((tmp_path / "deep" / "metrics.jsonl").read_text())["epoch"] == 1


def test_mixed_precision_computes_in_bf16_with_fp32_params_and_loss():
    seen = []

    def spy(apply_fn):
        def apply(variables, x, **kwargs):
            seen.append((x.dtype, jax.tree.leaves(variables["params"])[0].dtype))
            return apply_fn(variables, x, **kwargs)

        return train.mixed_precision(apply)

    state = _state(apply_wrapper=spy)
    x = jax.random.uniform(jax.random.key(1), (4, *SHAPE))
    y = jnp.arange(4, dtype=jnp.int32) % 3
    np.testing.assert_allclose(
        train.eval_logits(state)(x), train.eval_logits(_state())(x), atol=0.05, rtol=0.05
    )
    new_state, metrics = train.make_step(train.standard())(state, (x, y), jax.random.key(0))
    assert seen and all(d == (jnp.bfloat16, jnp.bfloat16) for d in seen)
    assert metrics["loss"].dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.params))
    with pytest.raises(ValueError, match="floating"):
        train.mixed_precision(lambda *a: a, dtype=jnp.int32)
