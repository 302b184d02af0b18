"""Architecture tests for the model zoo: shapes, parameter counts, registry, jaxpr ops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import models

MNIST = (2, 28, 28, 1)
CIFAR = (2, 32, 32, 3)


# ---- hand-computed parameter counts --------------------------------------------------


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def dense(fan_in, fan_out):
    return fan_in * fan_out + fan_out


def bn(c):
    return 2 * c  # scale + bias (running stats are not parameters)


def count(model, shape):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return models.param_count(variables)


def test_madry_cnn_param_count():
    expected = conv(5, 1, 32) + conv(5, 32, 64) + dense(7 * 7 * 64, 1024) + dense(1024, 10)
    assert expected == 3_274_634
    assert count(models.MadryCNN(), MNIST) == expected


def test_fast_mnist_param_count():
    # 28 -(4x4/2, pad 1)-> 14 -(4x4/2, pad 1)-> 7
    expected = conv(4, 1, 16) + conv(4, 16, 32) + dense(7 * 7 * 32, 100) + dense(100, 10)
    assert expected == 166_406
    assert count(models.FastMNISTNet(), MNIST) == expected


def test_small_cnn_param_count():
    # 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4
    expected = (
        conv(3, 1, 32)
        + conv(3, 32, 32)
        + conv(3, 32, 64)
        + conv(3, 64, 64)
        + dense(4 * 4 * 64, 200)
        + dense(200, 200)
        + dense(200, 10)
    )
    assert expected == 312_202
    assert count(models.SmallCNN(), MNIST) == expected


def test_ibp_small_param_count():
    # MNIST: 28 -(4x4/2 VALID)-> 13 -(4x4/1 VALID)-> 10
    expected = conv(4, 1, 16) + conv(4, 16, 32) + dense(10 * 10 * 32, 100) + dense(100, 10)
    assert expected == 329_606
    assert count(models.IBPSmall(), MNIST) == expected
    # CIFAR: 32 -> 15 -> 12
    expected_cifar = conv(4, 3, 16) + conv(4, 16, 32) + dense(12 * 12 * 32, 100) + dense(100, 10)
    assert count(models.IBPSmall(), CIFAR) == expected_cifar


def test_ibp_medium_param_count():
    # MNIST: 28 -> 26 -> 12 -> 10 -> 4 (all VALID)
    expected = (
        conv(3, 1, 32)
        + conv(4, 32, 32)
        + conv(3, 32, 64)
        + conv(4, 64, 64)
        + dense(4 * 4 * 64, 512)
        + dense(512, 512)
        + dense(512, 10)
    )
    assert count(models.IBPMedium(), MNIST) == expected


def test_ibp_large_param_count():
    # CIFAR, SAME padding: 32 -> 32 -> 32 -> 16 -> 16 -> 16
    convs = conv(3, 3, 64) + conv(3, 64, 64) + conv(3, 64, 128) + 2 * conv(3, 128, 128)
    assert count(models.IBPLarge(), CIFAR) == convs + dense(16 * 16 * 128, 512) + dense(512, 10)
    assert count(models.IBPLarge(hidden=200), CIFAR) == (
        convs + dense(16 * 16 * 128, 200) + dense(200, 10)
    )


def test_preact_resnet18_param_count():
    n = count(models.PreActResNet18(), CIFAR)
    # PyTorch kuangliu/pytorch-cifar PreActResNet18: 11,171,146; the Wong et al. /
    # Rice et al. variant adds a final BatchNorm(512) before the pooling.
    assert n == 11_171_146 + bn(512) == 11_172_170


def test_wide_resnet_param_counts():
    assert count(models.WideResNet(depth=28, widen_factor=10), CIFAR) == 36_479_194
    assert count(models.WideResNet(depth=34, widen_factor=10), CIFAR) == 46_160_474
    # WRN-10-1 by hand: one block per group, widths 16 / 16 / 32 / 64.
    g1 = bn(16) + conv(3, 16, 16, False) + bn(16) + conv(3, 16, 16, False)
    g2 = bn(16) + conv(3, 16, 32, False) + bn(32) + conv(3, 32, 32, False) + 16 * 32
    g3 = bn(32) + conv(3, 32, 64, False) + bn(64) + conv(3, 64, 64, False) + 32 * 64
    expected = conv(3, 3, 16, False) + g1 + g2 + g3 + bn(64) + dense(64, 10)
    assert count(models.WideResNet(depth=10, widen_factor=1), CIFAR) == expected


# ---- output shapes (real forward passes, NumPy-filled weights) -------------------------

CASES = [
    ("mlp", {"hidden": (32, 16)}, MNIST),
    ("madry_cnn", {}, MNIST),
    ("fast_mnist", {}, MNIST),
    ("ibp_small", {}, MNIST),
    ("ibp_medium", {}, MNIST),
    ("ibp_large", {}, MNIST),
    ("small_cnn", {}, MNIST),
    ("ibp_small", {}, CIFAR),
    ("ibp_medium", {}, CIFAR),
    ("ibp_large", {}, CIFAR),
    ("preact_resnet18", {}, CIFAR),
    ("wide_resnet", {"depth": 10, "widen_factor": 1}, CIFAR),
    ("wide_resnet", {"depth": 16, "widen_factor": 2, "num_classes": 100}, CIFAR),
    ("madry_cnn", {"num_classes": 7}, MNIST),
]


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES)
def test_output_shape_and_finite(name, kwargs, shape, np_init):
    model = models.get_model(name, **kwargs)
    variables = np_init(model, shape)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=shape), jnp.float32)
    logits = models.eval_logits_fn(model, variables)(x)
    assert logits.shape == (shape[0], kwargs.get("num_classes", 10))
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_batchnorm_models_have_batch_stats_others_do_not(np_init):
    assert "batch_stats" in np_init(models.PreActResNet18(stage_sizes=(1, 1, 1, 1)), CIFAR)
    assert "batch_stats" in np_init(models.WideResNet(depth=10, widen_factor=1), CIFAR)
    for m in (models.MadryCNN(), models.SmallCNN(), models.IBPSmall(), models.FastMNISTNet()):
        assert sorted(np_init(m, MNIST)) == ["params"]


def test_input_normalisation_is_affine_preprocessing(np_init):
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    plain = models.IBPSmall()
    normed = models.IBPSmall(mean=mean, std=std)
    variables = np_init(plain, CIFAR)
    x = jnp.asarray(np.random.default_rng(2).uniform(size=CIFAR), jnp.float32)
    x_n = (x - jnp.asarray(mean)) / jnp.asarray(std)
    out_normed = models.eval_logits_fn(normed, variables)(x)
    out_plain = models.eval_logits_fn(plain, variables)(x_n)
    np.testing.assert_allclose(out_normed, out_plain, rtol=1e-5, atol=1e-5)


def test_invalid_architecture_arguments_raise():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        count(models.WideResNet(depth=27), CIFAR)
    with pytest.raises(ValueError, match="stage_sizes"):
        count(models.PreActResNet18(stage_sizes=(2, 2, 2)), CIFAR)


# ---- every eval-mode jaxpr uses only IBP-friendly primitives ----------------------------

_LEAF_OK = {
    "conv_general_dilated",
    "dot_general",
    "add",
    "sub",
    "mul",
    "div",
    "max",
    "reduce_window_max",
    "reduce_sum",
    "reshape",
    "broadcast_in_dim",
    "rsqrt",
    "convert_element_type",
    "squeeze",
    "expand_dims",
}
_CONTAINERS = {"pjit", "jit", "custom_jvp_call"}  # wrappers around sub-jaxprs (e.g. relu)


def _primitives(jaxpr, acc):
    for eqn in jaxpr.eqns:
        acc.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                if hasattr(sub, "eqns"):
                    _primitives(sub, acc)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    _primitives(sub.jaxpr, acc)
    return acc


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("mlp", {}, MNIST),
        ("madry_cnn", {}, MNIST),
        ("fast_mnist", {}, MNIST),
        ("small_cnn", {}, MNIST),
        ("ibp_small", {"mean": (0.5,), "std": (0.25,)}, MNIST),
        ("ibp_medium", {}, MNIST),
        ("ibp_large", {}, CIFAR),
        ("preact_resnet18", {"mean": (0.5,) * 3, "std": (0.25,) * 3}, CIFAR),
        ("wide_resnet", {"depth": 10, "widen_factor": 1}, CIFAR),
    ],
)
def test_eval_jaxpr_uses_only_plain_ops(name, kwargs, shape):
    model = models.get_model(name, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        variables, jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    prims = _primitives(jaxpr.jaxpr, set())
    assert prims - _CONTAINERS <= _LEAF_OK, sorted(prims - _CONTAINERS - _LEAF_OK)


# ---- registry ----------------------------------------------------------------------------


def test_list_models():
    assert models.list_models() == sorted(
        [
            "mlp",
            "madry_cnn",
            "fast_mnist",
            "ibp_small",
            "ibp_medium",
            "ibp_large",
            "small_cnn",
            "preact_resnet18",
            "wide_resnet",
            "wide_resnet_34_10",
        ]
    )


def test_get_model_types_and_kwargs():
    assert isinstance(models.get_model("madry_cnn"), models.MadryCNN)
    assert isinstance(models.get_model("Fast-MNIST"), models.FastMNISTNet)
    wrn = models.get_model("wide_resnet", depth=34, widen_factor=10, dropout_rate=0.3)
    assert isinstance(wrn, models.WideResNet)
    assert (wrn.depth, wrn.widen_factor, wrn.dropout_rate) == (34, 10, 0.3)
    assert models.get_model("mlp", hidden=(5,), num_classes=3).num_classes == 3


def test_get_model_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown model 'resnet50'") as excinfo:
        models.get_model("resnet50")
    for name in models.list_models():
        assert name in str(excinfo.value)


def test_get_model_bad_kwarg_raises_type_error():
    with pytest.raises(TypeError):
        models.get_model("madry_cnn", widen_factor=3)


def test_public_api_is_exported():
    for name in models.__all__:
        assert hasattr(models, name), name
