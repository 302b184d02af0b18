import jax
import jax.numpy as jnp
import numpy as np
import optax
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
    "wide_resnet_34_10": dict(depth=10, widen_factor=1),  # the same blocks, certified small
}
SHAPES = {"preact_resnet18": (8, 8, 3), "wide_resnet": (8, 8, 3), "wide_resnet_34_10": (8, 8, 3)}


_SLOW = {
    "preact_resnet18",
    "wide_resnet",
    "wide_resnet_34_10",
    "ibp_large",
    "ibp_medium",
    "fast_mnist",
    # heaviest on CPU; mlp stays in the default run (IBP + CROWN-IBP soundness on the zoo)
    "ibp_small",
    "madry_cnn",
    "small_cnn",
}


def _trained(model, variables, shape, steps: int = 30):
    """Weights after ``steps`` Adam steps of standard training on a fixed random batch.

    Trained weights are larger and correlated, unlike a fresh initialisation, and
    BatchNorm statistics move away from (0, 1): both stress the bounds differently.
    """
    from advjax import train

    state = train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=optax.adam(1e-2),
    )
    step = train.make_step(train.standard())
    kx, ky = jax.random.split(jax.random.PRNGKey(11))
    batch = (jax.random.uniform(kx, (16, *shape)), jax.random.randint(ky, (16,), 0, 10))
    for i in range(steps):
        state, _ = step(state, batch, jax.random.PRNGKey(i))
    return state.variables()


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in models.list_models()],
)
def test_certify_zoo_ibp_sound(name, weights, check_sound):
    """IBP (and CROWN-IBP where supported) bounds hold for 10,000 samples and a PGD per output."""
    try:
        model = models.get_model(name, **SMALL.get(name, {}))
    except TypeError:
        model = models.get_model(name)
    shape = SHAPES.get(name, (28, 28, 1))
    variables = models.init_model(model, jax.random.PRNGKey(0), shape)
    if weights == "trained":
        variables = _trained(model, variables, shape)
    logits = models.eval_logits_fn(model, variables)

    def f(x):
        return logits(x[None])[0]

    key = jax.random.PRNGKey(3)
    x = jax.random.uniform(key, shape)
    radius = jax.random.uniform(jax.random.fold_in(key, 1), shape, minval=0.0, maxval=0.02)
    lo, hi = jnp.clip(x - radius, 0, 1), jnp.clip(x + radius, 0, 1)
    b_lo, b_hi = jax.jit(interval_bounds(f))(lo, hi)
    check_sound(f, lo, hi, b_lo, b_hi, key, n=10_000, pgd=True)
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
        check_sound(f, lo, hi, c_lo, c_hi, key, n=10_000, pgd=True)
