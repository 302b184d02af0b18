"""Tests for init_model / eval_logits_fn / train_apply semantics."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import models

MNIST = (2, 28, 28, 1)
CIFAR = (2, 32, 32, 3)


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _tree_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    return tree_a == tree_b and all(
        np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(leaves_a, leaves_b, strict=True)
    )


def test_init_model_plain_dict_unbatched_shape_and_determinism():
    model = models.MLP(hidden=(8,), num_classes=3)
    unhashable = models.MLP(hidden=[8], num_classes=3)
    v1 = models.init_model(model, jax.random.key(0), (4, 4, 1))
    v2 = models.init_model(unhashable, jax.random.key(0), (5, 4, 4, 1))
    assert isinstance(v1, dict) and sorted(v1) == ["params"]
    assert v1["params"]["Dense_0"]["kernel"].shape == (16, 8)
    assert _tree_equal(v1, v2)  # batch size does not matter, same key -> same params
    assert models.param_count(v1) == (16 * 8 + 8) + (8 * 3 + 3)


def test_init_model_batchnorm_running_stats_start_at_identity():
    block = models.PreActBlock(features=2)
    variables = models.init_model(block, jax.random.key(0), (4, 4, 2))
    assert sorted(variables) == ["batch_stats", "params"]
    for bn in ("bn1", "bn2"):
        stats = variables["batch_stats"][bn]
        np.testing.assert_array_equal(stats["mean"], np.zeros(2))
        np.testing.assert_array_equal(stats["var"], np.ones(2))
    assert "shortcut" not in variables["params"]  # same width, stride 1: identity shortcut


def test_shortcut_conv_only_when_shape_changes():
    def names(block, shape):
        v = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.zeros(shape)))
        return set(v["params"])

    assert "shortcut" in names(models.PreActBlock(features=4), (1, 4, 4, 2))
    assert "shortcut" in names(models.PreActBlock(features=2, stride=2), (1, 4, 4, 2))
    assert "shortcut" not in names(models.PreActBlock(features=2), (1, 4, 4, 2))


def test_eval_logits_fn_deterministic_and_never_updates_batch_stats(np_init):
    model = models.WideResNet(depth=10, widen_factor=1)
    variables = np_init(model, CIFAR)
    snapshot = jax.tree.map(np.array, variables)
    f = models.eval_logits_fn(model, variables)
    x = _x(CIFAR)
    y1, y2 = f(x), f(x)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(jax.jit(f)(x), y1, rtol=1e-4, atol=1e-4)
    assert _tree_equal(variables, snapshot)
    # eval mode uses running averages, so one example's logits don't depend on the batch
    np.testing.assert_allclose(f(x[:1]), y1[:1], rtol=1e-4, atol=1e-4)


def test_train_apply_updates_batch_stats_and_uses_batch_statistics(np_init):
    model = models.WideResNet(depth=10, widen_factor=1)
    variables = np_init(model, CIFAR)
    x = _x(CIFAR)
    logits, state = models.train_apply(model, variables, x, rng=jax.random.key(0))
    assert logits.shape == (2, 10)
    assert sorted(state) == ["batch_stats"]
    assert jax.tree.structure(state["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    assert not _tree_equal(state["batch_stats"], variables["batch_stats"])
    eval_logits = models.eval_logits_fn(model, variables)(x)
    assert not np.allclose(logits, eval_logits)


def test_batchnorm_momentum_matches_pytorch_default(np_init):
    block = models.PreActBlock(features=3)
    variables = np_init(block, (4, 5, 5, 3))
    x = _x((4, 5, 5, 3), seed=3) * 2.0 + 1.0
    _, state = models.train_apply(block, variables, x)
    stats = state["batch_stats"]["bn1"]
    batch_mean = np.asarray(x).mean(axis=(0, 1, 2))
    batch_var = np.asarray(x).var(axis=(0, 1, 2))
    np.testing.assert_allclose(stats["mean"], 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * batch_var, rtol=1e-4, atol=1e-6)


def test_train_apply_without_batch_stats_returns_empty_state(np_init):
    model = models.MadryCNN()
    variables = np_init(model, MNIST)
    logits, state = models.train_apply(model, variables, _x(MNIST))
    assert state == {}
    np.testing.assert_allclose(
        logits, models.eval_logits_fn(model, variables)(_x(MNIST)), rtol=1e-5, atol=1e-5
    )


def test_dropout_only_in_train_mode(np_init):
    model = models.SmallCNN()
    variables = np_init(model, MNIST)
    x = _x(MNIST)
    f = models.eval_logits_fn(model, variables)
    y_eval = f(x)
    np.testing.assert_array_equal(y_eval, f(x))
    a, _ = models.train_apply(model, variables, x, rng=jax.random.key(1))
    a2, _ = models.train_apply(model, variables, x, rng=jax.random.key(1))
    b, _ = models.train_apply(model, variables, x, rng=jax.random.key(2))
    np.testing.assert_array_equal(a, a2)
    assert not np.allclose(a, b)
    assert not np.allclose(a, y_eval)
    with pytest.raises(flax.errors.InvalidRngError):
        models.train_apply(model, variables, x)
    # dropout_rate=0: train mode equals eval mode and needs no rng
    no_drop = models.SmallCNN(dropout_rate=0.0)
    c, _ = models.train_apply(no_drop, variables, x)
    np.testing.assert_allclose(c, y_eval, rtol=1e-5, atol=1e-5)


def test_resnet_block_dropout_only_in_train_mode(np_init):
    # WideResNet(dropout_rate=p) forwards p to every PreActBlock; test one block
    # (each dropout site costs a PRNG compile on CPU).
    block = models.PreActBlock(features=3, dropout_rate=0.3)
    shape = (2, 6, 6, 3)
    variables = np_init(block, shape)
    x = _x(shape)
    a, _ = models.train_apply(block, variables, x, rng=jax.random.key(1))
    b, _ = models.train_apply(block, variables, x, rng=jax.random.key(2))
    assert not np.allclose(a, b)
    with pytest.raises(flax.errors.InvalidRngError):
        models.train_apply(block, variables, x)
    f = models.eval_logits_fn(block, variables)
    np.testing.assert_array_equal(f(x), f(x))
    wrn = models.WideResNet(depth=10, widen_factor=1, dropout_rate=0.3)
    assert wrn.dropout_rate == 0.3


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (models.FastMNISTNet(), MNIST),
        (models.SmallCNN(), MNIST),
        (models.IBPSmall(mean=(0.1307,), std=(0.3081,)), MNIST),
        (models.WideResNet(depth=10, widen_factor=1), CIFAR),
    ],
    ids=["fast_mnist", "small_cnn", "ibp_small", "wrn10_1"],
)
def test_jit_and_input_gradient(model, shape, np_init):
    variables = np_init(model, shape)
    f = models.eval_logits_fn(model, variables)
    x = _x(shape)

    def loss(x_):
        return jnp.sum(f(x_)[:, 0])

    g = jax.jit(jax.grad(loss))(x)
    assert g.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(g).sum()) > 0.0
    np.testing.assert_allclose(jax.jit(f)(x), f(x), rtol=1e-4, atol=1e-4)
