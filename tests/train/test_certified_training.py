"""Certified training objectives (advjax.train) on the bounds of advjax.certify."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import advjax
from advjax import certify, data, train
from advjax.certify import batched_margin_lower_bounds, certified_markdown, certified_report
from advjax.train import (
    certified_training,
    crown_ibp_training,
    epsilon_ramp,
    gaussian_noise_training,
    ibp_schedules,
    ibp_training,
)


class _TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(32)(x))
        return nn.Dense(10)(x)


class _BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train)(x.reshape((x.shape[0], -1)))
        return nn.Dense(10)(x)


def _state(model, lr=1e-2, seed=0):
    variables = model.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    return train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=optax.adam(lr),
        batch_stats=variables.get("batch_stats"),
    )


@pytest.fixture(scope="module")
def mnist_small():
    ds = data.load_embedded_mnist("train")
    x = np.asarray(data.to_device(ds.images[:600]))
    return x, np.asarray(ds.labels[:600], np.int32)


def test_certified_training_schedules():
    eps, kappa = ibp_schedules(0.4, warmup_steps=10, ramp_steps=20)
    got = [(float(eps(t)), float(kappa(t))) for t in (0, 10, 20, 30, 1000)]
    np.testing.assert_allclose(
        got, [(0, 1), (0, 1), (0.2, 0.75), (0.4, 0.5), (0.4, 0.5)], atol=1e-6
    )
    smooth = epsilon_ramp(1.0, 10, kind="smooth")
    vals = np.array([float(smooth(t)) for t in range(12)])
    assert vals[0] == 0 and vals[-1] == 1 and np.all(np.diff(vals) >= 0)
    assert abs(vals[5] - 0.5) < 1e-6 and vals[1] < 0.1  # slow start
    assert float(epsilon_ramp(3.0, 0, start_step=5, initial=2.0)(5)) == 3.0
    assert float(epsilon_ramp(3.0, 0, start_step=5, initial=2.0)(4)) == 2.0
    down = epsilon_ramp(0.0, 4, start_step=2, initial=1.0)  # CROWN-IBP's beta 1 -> 0
    assert [float(down(t)) for t in (0, 2, 4, 6, 9)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="shape"):
        ibp_schedules(0.1, warmup_steps=0, ramp_steps=1, shape="cosine")
    with pytest.raises(ValueError, match="kind"):
        epsilon_ramp(0.1, 1, kind="cosine")
    with pytest.raises(ValueError, match="warmup_steps"):
        ibp_schedules(0.1, warmup_steps=-1, ramp_steps=1)


def test_certified_training_names_moved_out_of_certify():
    for name in ("ibp_training", "crown_ibp_training", "certified_training"):
        assert getattr(advjax, name) is getattr(train, name)
    assert advjax.gaussian_noise_training is train.gaussian_noise_training
    with pytest.raises(AttributeError, match="advjax.train.epsilon_ramp"):
        certify.ramp_schedule  # noqa: B018
    with pytest.raises(AttributeError, match="advjax.train.ibp_training"):
        certify.ibp_training  # noqa: B018


def test_certified_training_margins_sound_and_mixed():
    model = _TinyMLP()
    v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    f = lambda x: model.apply(v, x)  # noqa: E731
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    y = jnp.array([0, 1, 2, 3])
    bounds = jax.jit(lambda b: batched_margin_lower_bounds(f, x, y, 0.05, beta=b))
    # beta is the CROWN-IBP weight (Zhang et al. 2020): 0 is IBP, 1 is CROWN-IBP
    ibp, crown, mixed = bounds(0.0), bounds(1.0), bounds(0.75)
    np.testing.assert_allclose(mixed, 0.75 * crown + 0.25 * ibp, rtol=1e-4, atol=1e-4)
    static_ibp = batched_margin_lower_bounds(f, x, y, 0.05)  # default: no CROWN pass
    np.testing.assert_allclose(static_ibp, ibp, rtol=1e-6, atol=1e-6)
    crown_ibp_margins = certify.certified_margins(f, x, y, 0.05, method="crown-ibp")
    off_label = np.arange(10)[None] != np.asarray(y)[:, None]  # certify's label column: inf
    np.testing.assert_allclose(
        np.asarray(crown)[off_label], np.asarray(crown_ibp_margins)[off_label], rtol=1e-4, atol=1e-4
    )
    logits = f(x)
    true = jnp.take_along_axis(logits, y[:, None], 1) - logits
    for m in (ibp, crown):  # lower bounds of the margins at the centre
        assert np.all(np.asarray(m) <= np.asarray(true) + 1e-4)
        np.testing.assert_allclose(np.asarray(m)[np.arange(4), np.asarray(y)], 0.0)


def test_certified_training_objective_finite_and_schedules(mnist_small):
    x, y = mnist_small
    state = _state(_TinyMLP())
    eps, kappa = ibp_schedules(0.2, warmup_steps=1, ramp_steps=2)
    objective = crown_ibp_training(
        eps, kappa=kappa, beta=epsilon_ramp(0.0, 2, start_step=1, initial=1.0)
    )
    batch = (jnp.asarray(x[:32]), jnp.asarray(y[:32]))
    grad_fn = jax.jit(jax.grad(objective, has_aux=True))
    seen = []
    for t in range(4):
        grads, (metrics, _) = grad_fn(state.params, state.replace(step=t), batch, jax.random.key(0))
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
        assert np.isfinite(float(metrics["loss"]))
        seen.append((float(metrics["eps"]), float(metrics["kappa"]), float(metrics["beta"])))
    np.testing.assert_allclose(
        seen, [(0, 1, 1), (0, 1, 1), (0.1, 0.75, 0.5), (0.2, 0.5, 0.0)], atol=1e-6
    )
    # Once beta is 0 the scheduled objective is the IBP objective (the recipes
    # switch to it after the ramp to skip the CROWN pass).
    after_ramp = state.replace(step=5)
    scheduled, _ = jax.jit(objective)(state.params, after_ramp, batch, jax.random.key(0))
    plain_ibp, _ = jax.jit(ibp_training(eps, kappa=kappa))(
        state.params, after_ramp, batch, jax.random.key(0)
    )
    np.testing.assert_allclose(float(scheduled), float(plain_ibp), rtol=1e-6)


def test_certified_training_rejects_batchnorm_and_bad_args():
    state = _state(_BNNet())
    batch = (jnp.zeros((2, 28, 28, 1)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="BatchNorm"):
        ibp_training(0.1)(state.params, state, batch, jax.random.key(0))
    with pytest.raises(TypeError, match="kappa"):
        certified_training(0.1, kappa="high")
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise_training(0.0)


def test_certified_training_reduces_loss_and_verified_le_pgd_le_clean(mnist_small):
    x, y = mnist_small
    state = _state(_TinyMLP(), lr=3e-3)
    eps, kappa = ibp_schedules(0.1, warmup_steps=20, ramp_steps=60)
    step = train.make_step(ibp_training(eps, kappa=kappa))
    fixed_loss = jax.jit(ibp_training(0.05, kappa=0.5))
    b0 = (jnp.asarray(x[:100]), jnp.asarray(y[:100]))
    before = float(fixed_loss(state.params, state, b0, jax.random.key(0))[0])
    key = jax.random.key(1)
    for epoch in range(30):
        i = (epoch % 6) * 100
        state, metrics = step(
            state, (jnp.asarray(x[i : i + 100]), jnp.asarray(y[i : i + 100])), key
        )
    after = float(fixed_loss(state.params, state, b0, jax.random.key(0))[0])
    assert after < before
    for _ in range(90):  # finish the ramp and train at eps 0.1
        i = (int(state.step) % 6) * 100
        state, metrics = step(
            state, (jnp.asarray(x[i : i + 100]), jnp.asarray(y[i : i + 100])), key
        )
    logits_fn = train.eval_logits(state)
    report = certified_report(
        logits_fn,
        x[:64],
        y[:64],
        [0.05],
        methods=("ibp", "crown-ibp"),
        key=jax.random.key(2),
        pgd_steps=100,
        pgd_restarts=10,
        batch_size=64,
    )
    assert report["consistent"], report
    clean, pgd_acc = report["clean_acc"], report["pgd"]["acc"][0]
    for m in ("ibp", "crown-ibp"):
        assert report["certified"][m][0] <= pgd_acc <= clean
    assert report["certified"]["ibp"][0] > 0.2  # training produced certificates
    # the union of two sound certificates: at least either, at most both, still below PGD
    union = report["certified_any"][0]
    per_method = [report["certified"][m][0] for m in ("ibp", "crown-ibp")]
    assert max(per_method) <= union <= min(sum(per_method), pgd_acc)
    table = certified_markdown(report)
    assert "certified (crown-ibp)" in table and "certified (any)" in table and "holds" in table


def test_certified_training_gaussian_noise_objective(mnist_small):
    x, y = mnist_small
    state = _state(_TinyMLP())
    step = train.make_step(gaussian_noise_training(0.25))
    state, metrics = step(state, (jnp.asarray(x[:50]), jnp.asarray(y[:50])), jax.random.key(0))
    assert np.isfinite(float(metrics["loss"]))
