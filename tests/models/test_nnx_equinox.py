"""The same network written in linen, NNX and Equinox trains, bounds and saves the same."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import advjax
from advjax import models, runs, train

eqx = pytest.importorskip("equinox")

SHAPE = (8, 8, 1)
WIDTH = 4
CLASSES = 5


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.relu(nn.Conv(WIDTH, (3, 3), padding="SAME", name="conv")(x))
        return nn.Dense(CLASSES, name="dense")(h.reshape(h.shape[0], -1))


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, WIDTH, (3, 3), padding="SAME", rngs=rngs)
        self.dense = nnx.Linear(WIDTH * 64, CLASSES, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.conv(x))
        return self.dense(h.reshape(h.shape[0], -1))


class EquinoxNet(eqx.Module):
    conv: eqx.nn.Conv2d
    dense: eqx.nn.Linear

    def __init__(self, key):
        conv_key, dense_key = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, WIDTH, 3, padding=1, key=conv_key)
        self.dense = eqx.nn.Linear(WIDTH * 64, CLASSES, key=dense_key)

    def __call__(self, x, *, key=None):
        h = jax.nn.relu(self.conv(jnp.transpose(x, (2, 0, 1))))  # HWC -> CHW
        return self.dense(jnp.transpose(h, (1, 2, 0)).reshape(-1))  # flatten in HWC order


def linen_to_nnx(params):
    return {"conv": dict(params["conv"]), "dense": dict(params["dense"])}


def linen_to_equinox(params):
    conv, dense = params["conv"], params["dense"]
    return {
        "conv": {
            "weight": jnp.transpose(conv["kernel"], (3, 2, 0, 1)),
            "bias": conv["bias"][:, None, None],
        },
        "dense": {"weight": dense["kernel"].T, "bias": dense["bias"]},
    }


def equinox_to_linen(params):
    conv, dense = params["conv"], params["dense"]
    return {
        "conv": {
            "kernel": jnp.transpose(conv["weight"], (2, 3, 1, 0)),
            "bias": conv["bias"][:, 0, 0],
        },
        "dense": {"kernel": dense["weight"].T, "bias": dense["bias"]},
    }


@pytest.fixture(scope="module")
def three_models():
    """The three models with the linen model's initial weights."""
    linen = LinenNet()
    linen_vars = models.init_model(linen, jax.random.key(0), SHAPE)
    nnx_model = models.NNXModel(NNXNet(nnx.Rngs(1)))
    eqx_model = models.EquinoxModel(EquinoxNet(jax.random.key(2)))
    return {
        "linen": (linen, linen_vars, lambda p: p),
        "nnx": (nnx_model, {"params": linen_to_nnx(linen_vars["params"])}, lambda p: p),
        "equinox": (
            eqx_model,
            {"params": linen_to_equinox(linen_vars["params"])},
            equinox_to_linen,
        ),
    }


def batch():
    x = jax.random.uniform(jax.random.key(3), (16, *SHAPE))
    y = jax.random.randint(jax.random.key(4), (16,), 0, CLASSES)
    return x, y


def test_the_three_models_compute_the_same_logits_and_input_gradients(three_models):
    x, y = batch()
    outputs = {}
    for name, (model, variables, _) in three_models.items():
        logits_fn = models.eval_logits_fn(model, variables)
        grad = jax.grad(lambda z, f=logits_fn: advjax.losses.ce(f(z), y).sum())(x)
        outputs[name] = (logits_fn(x), grad)
    for name in ("nnx", "equinox"):
        np.testing.assert_allclose(outputs[name][0], outputs["linen"][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(outputs[name][1], outputs["linen"][1], rtol=1e-4, atol=1e-6)


def pgd_at_params(model, variables, steps=3):
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],  # TrainState.create copies: the donating step keeps them
        tx=optax.sgd(0.1, momentum=0.9),
    )
    objective = train.pgd_at(
        lambda e: advjax.pgd(e, steps=5, step_size=e / 4, norm="l2", keep_best=False), 0.5
    )
    step = train.make_step(objective)
    x, y = batch()
    for _ in range(steps):
        state, metrics = step(state, (x, y), jax.random.key(5))
    return state.params, metrics


def test_pgd_at_steps_give_the_same_parameters_in_linen_nnx_and_equinox(three_models):
    trained = {}
    for name, (model, variables, to_linen) in three_models.items():
        params, metrics = pgd_at_params(model, variables)
        trained[name] = (to_linen(params), metrics)
    reference, reference_metrics = trained["linen"]
    moved = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()),
        reference,
        three_models["linen"][1]["params"],
    )
    assert max(jax.tree.leaves(moved)) > 1e-3  # training changed the weights
    for name in ("nnx", "equinox"):
        params, metrics = trained[name]
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
            params,
            reference,
        )
        np.testing.assert_allclose(metrics["loss"], reference_metrics["loss"], rtol=1e-4)


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_are_the_same_for_the_three_models(three_models, method):
    x, _ = batch()
    bounds = {}
    for name, (model, variables, _) in three_models.items():
        logits_fn = models.eval_logits_fn(model, variables, fast_conv_grads=False)
        if method == "ibp":
            bound_fn = advjax.certify.interval_bounds(logits_fn)
        else:  # CROWN bounds one box; vmap over the examples
            single = advjax.certify.crown_bounds(lambda z, f=logits_fn: f(z[None])[0])
            bound_fn = jax.vmap(single)
        lower, upper = jax.jit(bound_fn)(x[:4] - 0.05, x[:4] + 0.05)
        bounds[name] = (np.asarray(lower), np.asarray(upper))
        assert np.all(np.isfinite(bounds[name][0])) and np.all(bounds[name][0] <= bounds[name][1])
    for name in ("nnx", "equinox"):
        np.testing.assert_allclose(bounds[name][0], bounds["linen"][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bounds[name][1], bounds["linen"][1], rtol=1e-4, atol=1e-5)


class NNXBatchNormNet(nnx.Module):
    """BatchNorm and dropout: the two layers whose train and eval modes differ."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, WIDTH, (3, 3), padding="SAME", rngs=rngs)
        self.norm = nnx.BatchNorm(WIDTH, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.dense = nnx.Linear(WIDTH * 64, CLASSES, rngs=rngs)

    def __call__(self, x):
        h = self.drop(nnx.relu(self.norm(self.conv(x))))
        return self.dense(h.reshape(h.shape[0], -1))


class EquinoxBatchNormNet(eqx.Module):
    conv: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm
    drop: eqx.nn.Dropout
    dense: eqx.nn.Linear

    def __init__(self, key):
        conv_key, dense_key = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, WIDTH, 3, padding=1, key=conv_key)
        self.norm = eqx.nn.BatchNorm(WIDTH, axis_name="batch", momentum=0.9, mode="batch")
        self.drop = eqx.nn.Dropout(0.5)
        self.dense = eqx.nn.Linear(WIDTH * 64, CLASSES, key=dense_key)

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.conv(jnp.transpose(x, (2, 0, 1))), state)
        h = self.drop(jax.nn.relu(h), key=key)
        return self.dense(jnp.transpose(h, (1, 2, 0)).reshape(-1)), state


def stateful_models():
    equinox_model, equinox_state = eqx.nn.make_with_state(EquinoxBatchNormNet)(jax.random.key(7))
    return {
        "nnx": models.NNXModel(NNXBatchNormNet(nnx.Rngs(6))),
        "equinox": models.EquinoxModel(equinox_model, equinox_state),
    }


@pytest.mark.parametrize("name", ["nnx", "equinox"])
def test_train_mode_updates_statistics_and_draws_dropout_from_the_key(name):
    model = stateful_models()[name]
    variables = models.init_model(model, jax.random.key(0), SHAPE)
    assert set(variables) == {"params", "batch_stats"}
    x, _ = batch()
    first, state = models.train_apply(model, variables, x, rng=jax.random.key(1))
    again, _ = models.train_apply(model, variables, x, rng=jax.random.key(1))
    other, _ = models.train_apply(model, variables, x, rng=jax.random.key(2))
    np.testing.assert_array_equal(first, again)  # the key alone decides the dropout mask
    assert not np.allclose(first, other)
    moved = jax.tree.map(
        lambda new, old: float(jnp.abs(new - old).max()),
        state["batch_stats"],
        variables["batch_stats"],
    )
    assert max(jax.tree.leaves(moved)) > 0  # running statistics moved
    logits_fn = models.eval_logits_fn(model, variables)
    # eval mode: running averages and no dropout, so an example's logits do not depend on
    # the rest of the batch (batch statistics or a batch-shaped dropout mask would)
    np.testing.assert_allclose(logits_fn(x[:3]), logits_fn(x)[:3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits_fn(x)[:3], first[:3], atol=1e-3)  # train mode differs


@pytest.mark.parametrize("name", ["nnx", "equinox"])
def test_fit_trades_resumes_saves_and_loads_back(name, tmp_path):
    model = stateful_models()[name]
    variables = models.init_model(model, jax.random.key(0), SHAPE)
    x = np.asarray(jax.random.uniform(jax.random.key(3), (32, *SHAPE)) * 255, np.uint8)
    y = np.asarray(jax.random.randint(jax.random.key(4), (32,), 0, CLASSES), np.int32)
    data = advjax.data.Dataset(name="toy", images=x, labels=y, num_classes=CLASSES)
    objective = train.trades(0.1, beta=6.0, steps=2, step_size=0.05)

    def run(max_steps=None):
        state = train.TrainState.create(
            apply_fn=model.apply,
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            tx=optax.adam(1e-2),
        )
        return train.fit(
            state,
            data,
            train.make_step(objective),
            epochs=2,
            batch_size=8,
            key=jax.random.key(9),
            checkpoint_dir=tmp_path / "checkpoints",
            progress=False,
            max_steps=max_steps,
        )

    interrupted = run(max_steps=5)
    assert int(interrupted.state.step) == 5
    resumed = run().state
    (tmp_path / "checkpoints").rename(tmp_path / "first")
    straight = run().state
    jax.tree.map(np.testing.assert_array_equal, resumed.params, straight.params)
    jax.tree.map(np.testing.assert_array_equal, resumed.batch_stats, straight.batch_stats)

    trained = resumed.variables()
    run_dir = runs.save_run_model(tmp_path / "run", trained, model=model, input_shape=SHAPE)
    with pytest.raises(runs.RunError, match="load_run\\(run_dir, model=...\\)"):
        runs.load_run(run_dir)
    loaded = runs.load_run(run_dir, model=stateful_models()[name])
    xs = jnp.asarray(x[:4], jnp.float32) / 255
    np.testing.assert_allclose(  # float32 round-off of eager vs jitted application
        loaded.logits_fn(xs), models.eval_logits_fn(model, trained)(xs), rtol=1e-5, atol=1e-6
    )
    native = loaded.model.module(loaded.variables)
    if name == "nnx":
        np.testing.assert_allclose(native(xs), loaded.logits_fn(xs), rtol=1e-5, atol=1e-6)
    else:
        module, state = native
        out = jax.vmap(lambda xi: module(xi, state)[0])(xs)
        np.testing.assert_allclose(out, loaded.logits_fn(xs), rtol=1e-5, atol=1e-6)


def test_wrappers_refuse_other_modules_and_foreign_variables():
    with pytest.raises(TypeError, match="NNXModel wraps a flax.nnx.Module"):
        models.NNXModel(LinenNet())
    with pytest.raises(TypeError, match="EquinoxModel wraps an equinox.Module"):
        models.EquinoxModel(NNXNet(nnx.Rngs(0)))
    model = models.NNXModel(NNXNet(nnx.Rngs(0)))
    other = models.EquinoxModel(EquinoxNet(jax.random.key(0)))
    with pytest.raises(ValueError, match="made for another model"):
        model.apply(models.init_model(other, jax.random.key(0), SHAPE), jnp.zeros((1, *SHAPE)))
    with pytest.raises(ValueError, match="in train mode pass rngs"):
        models.NNXModel(NNXBatchNormNet(nnx.Rngs(0))).apply(
            models.init_model(
                models.NNXModel(NNXBatchNormNet(nnx.Rngs(0))), jax.random.key(0), SHAPE
            ),
            jnp.zeros((2, *SHAPE)),
            train=True,
        )
    with pytest.raises(ValueError, match="pass variables with 'batch_stats'"):
        stateful_models()["equinox"].apply(
            {"params": models.init_model(stateful_models()["equinox"], None, SHAPE)["params"]},
            jnp.zeros((2, *SHAPE)),
        )
