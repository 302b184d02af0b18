import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.certify import (
    UnsupportedPrimitiveError,
    certified_accuracy,
    crown_ibp_bounds,
    interval_bounds,
)

models = pytest.importorskip("advjax.models")

SMALL = {
    "preact_resnet18": dict(stage_sizes=(1, 1, 1, 1)),
    "wide_resnet": dict(depth=10, widen_factor=1),
}
SHAPES = {"preact_resnet18": (8, 8, 3), "wide_resnet": (8, 8, 3)}


_SLOW = {
    "preact_resnet18",
    "wide_resnet",
    "ibp_large",
    "ibp_medium",
    "fast_mnist",
    # heaviest on CPU; mlp stays in the default run (IBP + CROWN-IBP soundness on the zoo)
    "ibp_small",
    "madry_cnn",
    "small_cnn",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in models.list_models()],
)
def test_certify_zoo_ibp_sound(name, check_sound):
    try:
        model = models.get_model(name, **SMALL.get(name, {}))
    except TypeError:
        model = models.get_model(name)
    shape = SHAPES.get(name, (28, 28, 1))
    variables = models.init_model(model, jax.random.PRNGKey(0), shape)
    logits = models.eval_logits_fn(model, variables)

    def f(x):
        return logits(x[None])[0]

    key = jax.random.PRNGKey(3)
    x = jax.random.uniform(key, shape)
    lo, hi = jnp.clip(x - 0.01, 0, 1), jnp.clip(x + 0.01, 0, 1)
    b_lo, b_hi = jax.jit(interval_bounds(f))(lo, hi)
    check_sound(f, lo, hi, b_lo, b_hi, key, n=256, pgd=False)
    np.testing.assert_array_less(np.asarray(b_lo) - 1e-4, np.asarray(f(x)))
    y = jnp.argmax(logits(x[None]), -1)
    assert certified_accuracy(logits, x[None], y, 0.0).shape == (1,)
    if name not in ("mlp", "ibp_small", "madry_cnn"):
        return
    try:
        c_lo, c_hi = jax.jit(crown_ibp_bounds(f))(lo, hi)
    except UnsupportedPrimitiveError as err:  # e.g. max pooling
        assert err.primitive
    else:
        check_sound(f, lo, hi, c_lo, c_hi, key, n=256, pgd=False)
