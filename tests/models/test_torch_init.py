"""PyTorch-default re-initialisation of zoo models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import models


def _params(name):
    model = models.get_model(name)
    return models.init_model(model, jax.random.key(0), (28, 28, 1))["params"]


@pytest.mark.parametrize("name", ["fast_mnist", "mlp", "ibp_small"])
def test_every_kernel_and_bias_is_uniform_within_one_over_sqrt_fan_in(name):
    params = _params(name)
    redrawn = models.torch_default_init(params, jax.random.key(1))
    assert jax.tree.structure(redrawn) == jax.tree.structure(params)
    for layer, leaves in redrawn.items():
        fan_in = int(np.prod(leaves["kernel"].shape[:-1]))
        bound = 1.0 / np.sqrt(fan_in)
        for value in leaves.values():
            value = np.asarray(value)
            assert np.abs(value).max() <= bound
            # uniform on [-b, b]: the standard deviation is b / sqrt(3) (a loose check)
            if value.size >= 1000:
                assert abs(value.std() - bound / np.sqrt(3)) < 0.1 * bound, layer
        assert np.any(np.asarray(leaves["bias"]) != 0), f"{layer}: biases stay zero"


def test_deterministic_for_a_key_and_different_across_keys():
    params = _params("fast_mnist")
    a = models.torch_default_init(params, jax.random.key(3))
    b = models.torch_default_init(params, jax.random.key(3))
    c = models.torch_default_init(params, jax.random.key(4))
    assert all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.all(u == v)), a, b)))
    assert not np.array_equal(a["fc1"]["kernel"], c["fc1"]["kernel"])


def test_a_bias_without_a_kernel_is_an_error():
    with pytest.raises(ValueError, match="bias without a kernel"):
        models.torch_default_init({"norm": {"bias": jnp.zeros(3)}}, jax.random.key(0))


def test_parameters_without_a_kernel_are_kept():
    params = {
        "dense": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)},
        "bn": {"scale": jnp.ones(2)},
    }
    redrawn = models.torch_default_init(params, jax.random.key(0))
    np.testing.assert_array_equal(redrawn["bn"]["scale"], params["bn"]["scale"])
