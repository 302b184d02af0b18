"""advjax.parallel on the test process's single device (the 8-device half is in
test_multi_device.py): shapes, padding, errors, and equality with plain code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import advjax
from advjax import models, parallel, train


def _linear_logits():
    w = jax.random.normal(jax.random.key(0), (12, 3))
    return lambda x: x.reshape(x.shape[0], -1) @ w


def test_mesh_and_shardings_cover_all_devices():
    mesh = parallel.make_mesh()
    assert mesh.devices.size == len(jax.devices())
    assert parallel.batch_divisor(parallel.batch_sharding(mesh)) == len(jax.devices())
    assert parallel.batch_divisor(parallel.replicated(mesh)) == 1
    named = parallel.make_mesh(jax.devices()[:1], axis="data")
    assert named.axis_names == ("data",)
    with pytest.raises(ValueError, match="at least one device"):
        parallel.make_mesh([])


def test_shard_batch_pads_with_valid_rows_and_masks_them():
    sharding = parallel.batch_sharding(parallel.make_mesh())
    x = np.linspace(0, 1, 5 * 4, dtype=np.float32).reshape(5, 4)
    y = np.arange(5, dtype=np.int32)
    (xs, ys), mask = parallel.shard_batch((x, y), sharding, size=8)
    assert xs.shape == (8, 4) and ys.shape == (8,) and mask.shape == (8,)
    np.testing.assert_array_equal(np.asarray(mask), [True] * 5 + [False] * 3)
    np.testing.assert_array_equal(np.asarray(xs)[:5], x)
    np.testing.assert_array_equal(np.asarray(xs)[5:], np.repeat(x[:1], 3, axis=0))
    (xj,), _ = parallel.shard_batch((jnp.asarray(x),), sharding)
    assert xj.shape[0] == parallel.padded_size(5, len(jax.devices()))


def test_shard_batch_rejects_mismatched_or_short_sizes():
    sharding = parallel.batch_sharding(parallel.make_mesh())
    with pytest.raises(ValueError, match="same leading size"):
        parallel.shard_batch((np.zeros((3, 2)), np.zeros(4)), sharding)
    with pytest.raises(ValueError, match="must be >="):
        parallel.shard_batch(np.zeros((3, 2)), sharding, size=2)


@given(n=st.integers(0, 1000), count=st.integers(1, 17))
def test_host_slices_cover_every_example_once_in_order(n, count):
    slices = [parallel.host_slice(n, i, count) for i in range(count)]
    covered = [i for s in slices for i in range(n)[s]]
    assert covered == list(range(n))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_host_slice_and_initialize_distributed_single_process():
    assert parallel.host_slice(7) == slice(0, 7)
    with pytest.raises(ValueError, match="process_index"):
        parallel.host_slice(7, 2, 2)
    assert parallel.initialize_distributed() == (0, 1)
    assert parallel.initialize_distributed(num_processes=1) == (0, 1)


def test_sharded_attack_equals_the_jitted_attack():
    logits_fn = _linear_logits()
    x = jax.random.uniform(jax.random.key(1), (6, 12))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    attack = advjax.pgd(0.2, steps=4, restarts=2)
    expected = jax.jit(attack, static_argnums=0)(logits_fn, x, y, key=jax.random.key(2))
    got = parallel.sharded_attack(attack, parallel.make_mesh())(
        logits_fn, x, y, key=jax.random.key(2)
    )
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_pmap_attack_keeps_the_budget():
    logits_fn = _linear_logits()
    d = jax.local_device_count()
    x = jax.random.uniform(jax.random.key(1), (d, 3, 12))
    y = jnp.zeros((d, 3), jnp.int32)
    x_adv = parallel.pmap_attack(advjax.pgd(0.1, steps=3))(logits_fn, x, y, key=jax.random.key(0))
    assert x_adv.shape == x.shape
    assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6


def test_evaluate_with_a_sharding_gives_the_same_report():
    logits_fn = _linear_logits()
    x = jax.random.uniform(jax.random.key(1), (10, 12))
    y = jnp.argmax(logits_fn(x), -1)
    kwargs = dict(key=jax.random.key(3), batch_size=4, diagnostics=False)
    attacks = {"pgd": lambda e: advjax.pgd(e, steps=3)}
    plain = advjax.evaluate(logits_fn, x, y, attacks, [0.05, 0.2], **kwargs)
    sharded = advjax.evaluate(
        logits_fn,
        x,
        y,
        attacks,
        [0.05, 0.2],
        sharding=parallel.batch_sharding(parallel.make_mesh()),
        **kwargs,
    )
    assert plain.attacks[0].robust_accuracy == sharded.attacks[0].robust_accuracy
    assert plain.clean_accuracy == sharded.clean_accuracy


def _mlp_state():
    model = models.get_model("mlp", hidden=(16,))
    variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
    return train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1)
    )


def test_sharded_step_equals_make_step_and_keeps_the_state_sharding():
    mesh = parallel.make_mesh()
    batch = (jax.random.uniform(jax.random.key(1), (8, 4, 4, 1)), jnp.arange(8) % 10)
    step = train.make_step(train.standard(), jit=False)
    expected, _ = jax.jit(step)(_mlp_state(), batch, jax.random.key(2))
    run = parallel.sharded_step(step, mesh)
    for shard_params in (False, True):
        state = parallel.shard_train_state(_mlp_state(), mesh, shard_params=shard_params)
        one, metrics = run(state, batch, jax.random.key(2))
        np.testing.assert_allclose(
            np.asarray(one.params["Dense_0"]["kernel"]),
            np.asarray(expected.params["Dense_0"]["kernel"]),
            rtol=1e-6,
            atol=1e-7,
        )
        state, metrics = run(one, batch, jax.random.key(2))  # second call: cached program
        assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))
        kernel = state.params["Dense_0"]["kernel"]
        assert kernel.sharding == parallel.state_sharding(state, mesh).params["Dense_0"]["kernel"]


def test_param_sharding_replicates_small_and_indivisible_arrays():
    mesh = parallel.make_mesh()
    tree = {"big": jnp.zeros((64, 32)), "small": jnp.zeros(3), "scalar": jnp.zeros(())}
    shardings = parallel.param_sharding(tree, mesh, min_size=1000)
    assert tuple(shardings["small"].spec) == () and tuple(shardings["scalar"].spec) == ()
    if len(jax.devices()) == 1:
        assert tuple(shardings["big"].spec) == ()


def test_bf16_logits_compute_in_bf16_and_return_fp32_gradients():
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    logits_fn = parallel.bf16_logits(model, variables)
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    lines = str(jax.make_jaxpr(logits_fn)(x)).splitlines()
    convs = [line for line in lines if "conv_general_dilated" in line]
    assert len(convs) == 2 and all("bf16[" in line for line in convs)
    logits = logits_fn(x)
    assert logits.dtype == jnp.float32
    reference = models.eval_logits_fn(model, variables)(x)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), atol=0.05, rtol=0.05)
    grad = jax.grad(lambda xx: logits_fn(xx).sum())(x)
    assert grad.dtype == jnp.float32
