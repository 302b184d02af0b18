"""Every training objective on a tiny batch: loss, metrics, gradients, and defining properties."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import advjax
from advjax import losses, train

SHAPE = (6, 6, 1)


class Tiny(nn.Module):
    """A two-layer MLP on 6x6 images; optional BatchNorm and dropout."""

    batch_norm: bool = False
    dropout: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(12)(x.reshape(x.shape[0], -1))
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        if self.dropout:
            x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(3)(x)


def _state(model=None, tx=None, **kwargs):
    model = model or Tiny()
    variables = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))
    return train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=tx or optax.sgd(0.1),
        **kwargs,
    )


def _batch(n=8):
    x = jax.random.uniform(jax.random.key(1), (n, *SHAPE))
    return x, jnp.arange(n, dtype=jnp.int32) % 3


def _pgd(eps):
    return advjax.pgd(eps, steps=3, step_size=eps / 2, keep_best=False)


OBJECTIVES = {
    "standard": lambda: train.standard(),
    "pgd_at": lambda: train.pgd_at(_pgd, 0.3),
    "pgd_at_mixed": lambda: train.pgd_at(_pgd, 0.3, clean_weight=0.5),
    "pgd_at_alternate": lambda: train.pgd_at(_pgd, 0.3, alternate=True),
    "trades": lambda: train.trades(0.3, beta=6.0, steps=3, step_size=0.1),
    "mart": lambda: train.mart(0.3, beta=6.0, steps=3, step_size=0.1),
    "fgsm_rs": lambda: train.fgsm_rs(0.3, alpha=0.375),
    "fgsm_rs_unclipped_start": lambda: train.fgsm_rs(0.3, alpha=0.375, clip_start=False),
    "grad_l2": lambda: train.input_gradient_penalty(1.0, norm="l2"),
    "grad_l1": lambda: train.input_gradient_penalty(1.0, norm="l1"),
    "distill_teacher": lambda: train.distillation(100.0),
    "distill_student": lambda: train.distillation(
        20.0, teacher=lambda x: 5.0 * x.reshape(x.shape[0], -1)[:, :3]
    ),
}


# pgd_at's mixed and plain forms are also covered by test_fit_and_checkpoint.py; the others here
# by the property tests below, so their full step runs only with -m slow.
COVERED_ELSEWHERE = {"pgd_at", "pgd_at_mixed", "grad_l1", "distill_teacher", "distill_student"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in COVERED_ELSEWHERE else n
        for n in sorted(OBJECTIVES)
    ],
)
def test_objective_step_has_finite_loss_metrics_and_gradients(name):
    state = _state(Tiny(dropout=True))
    before = jax.tree.map(np.asarray, state.params)
    new_state, metrics = train.make_step(OBJECTIVES[name]())(state, _batch(), jax.random.key(2))
    assert int(new_state.step) == 1
    assert {"loss", "clean_acc"} <= set(metrics)
    assert np.isfinite(float(metrics["loss"])) and metrics["loss"].shape == ()
    after = jax.tree.leaves(new_state.params)
    # plain SGD: the update is -0.1 * gradient, so finite and non-zero parameters changes
    # mean finite, non-zero gradients
    assert all(np.isfinite(np.asarray(p)).all() for p in after)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), after, strict=True))


def test_trades_with_beta_zero_is_clean_cross_entropy():
    state = _state()
    x, y = _batch()
    loss, (metrics, _) = train.trades(0.3, beta=0.0, steps=2, step_size=0.1)(
        state.params, state, (x, y), jax.random.key(0)
    )
    expected = jnp.mean(losses.ce(train.eval_logits(state)(x), y))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert float(metrics["kl"]) >= 0.0


def test_trades_kl_vanishes_without_perturbation():
    state = _state()
    x, y = _batch()
    objective = train.trades(1e-9, beta=6.0, steps=1, step_size=1e-9, init_std=0.0)
    loss, (metrics, _) = objective(state.params, state, (x, y), jax.random.key(0))
    assert float(metrics["kl"]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(loss, metrics["clean_loss"], rtol=1e-5)


@pytest.mark.slow
def test_trades_attack_increases_kl():
    state = _state()
    x, y = _batch()
    weak = train.trades(1e-3, beta=1.0, steps=5, step_size=1e-3)
    strong = train.trades(0.3, beta=1.0, steps=5, step_size=0.1)
    kl_weak = weak(state.params, state, (x, y), jax.random.key(0))[1][0]["kl"]
    kl_strong = strong(state.params, state, (x, y), jax.random.key(0))[1][0]["kl"]
    assert float(kl_strong) > float(kl_weak)


def test_mart_matches_its_formula_at_beta_zero():
    state = _state()
    x, y = _batch()
    objective = train.mart(1e-9, beta=0.0, steps=1, step_size=1e-9, init_std=0.0)
    loss, _ = objective(state.params, state, (x, y), jax.random.key(0))
    probs = jax.nn.softmax(train.eval_logits(state)(x))
    true_p = probs[jnp.arange(8), y]
    wrong = jnp.max(jnp.where(jax.nn.one_hot(y, 3, dtype=bool), -1.0, probs), axis=-1)
    expected = jnp.mean(-jnp.log(true_p) - jnp.log(1.0001 - wrong))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_alternating_batches_switch_between_clean_and_adversarial():
    step = train.make_step(train.pgd_at(_pgd, 0.3, alternate=True))
    state = _state()
    state, first = step(state, _batch(), jax.random.key(0))
    state, second = step(state, _batch(), jax.random.key(0))
    assert np.isnan(float(first["adv_acc"])) and float(first["loss"]) == float(first["clean_loss"])
    assert np.isfinite(float(second["adv_acc"]))
    assert float(second["loss"]) == float(second["adv_loss"])


def test_free_at_carries_the_perturbation_across_replays_and_batches():
    eps = 0.1
    state = _state(carry=train.free_at_carry((8, *SHAPE)))
    step = train.make_step(train.free_at(eps), replays=3)
    state, metrics = step(state, _batch(), jax.random.key(0))
    assert int(state.step) == 3 and set(metrics) == {"loss", "adv_acc", "eps"}
    delta = np.asarray(state.carry["delta"])
    assert np.abs(delta).max() == pytest.approx(eps) and np.abs(delta).max() <= eps + 1e-7
    # the next batch starts from the carried perturbation, not from zero
    reset = state.replace(carry=train.free_at_carry((8, *SHAPE)))
    carried, _ = train.make_step(train.free_at(eps), jit=False)(state, _batch(), jax.random.key(1))
    fresh, _ = train.make_step(train.free_at(eps), jit=False)(reset, _batch(), jax.random.key(1))
    assert not np.allclose(carried.carry["delta"], fresh.carry["delta"])


def test_free_at_without_carry_is_a_clear_error():
    with pytest.raises(ValueError, match="free_at_carry"):
        train.make_step(train.free_at(0.1))(_state(), _batch(), jax.random.key(0))


def test_free_at_carry_survives_a_checkpoint(tmp_path):
    state = _state(carry=train.free_at_carry((8, *SHAPE)))
    state, _ = train.make_step(train.free_at(0.1), replays=2)(state, _batch(), jax.random.key(0))
    train.save_checkpoint(tmp_path / "c", state, {"epoch": 0, "batch": 1})
    restored, _ = train.restore_checkpoint(
        tmp_path / "c", _state(carry=train.free_at_carry((8, *SHAPE)))
    )
    np.testing.assert_array_equal(restored.carry["delta"], state.carry["delta"])
    assert int(restored.step) == 2


def test_distillation_divides_logits_by_the_temperature():
    state = _state()
    x, y = _batch()
    logits = train.eval_logits(state)(x)
    teacher_loss, _ = train.distillation(10.0)(state.params, state, (x, y), jax.random.key(0))
    np.testing.assert_allclose(teacher_loss, jnp.mean(losses.ce(logits / 10.0, y)), rtol=1e-6)

    def teacher(inputs):
        return 3.0 * inputs.reshape(inputs.shape[0], -1)[:, :3]

    student_loss, _ = train.distillation(4.0, teacher=teacher)(
        state.params, state, (x, y), jax.random.key(0)
    )
    soft = jax.nn.softmax(teacher(x) / 4.0)
    np.testing.assert_allclose(student_loss, jnp.mean(losses.ce(logits / 4.0, soft)), rtol=1e-6)


def test_batchnorm_statistics_update_while_attacks_see_eval_mode():
    state = _state(Tiny(batch_norm=True, dropout=True))
    seen = []

    def spy_attack(eps):
        attack = _pgd(eps)

        def run(logits_fn, x, y, *, key):
            # Eval mode: an example's logits do not depend on its batch (running
            # BatchNorm averages) and two calls agree (no dropout).
            batch_dependence = jnp.max(jnp.abs(logits_fn(x[:1]) - logits_fn(x)[:1]))
            call_to_call = jnp.max(jnp.abs(logits_fn(x) - logits_fn(x)))
            jax.debug.callback(
                lambda a, b: seen.append((float(a), float(b))), *(batch_dependence, call_to_call)
            )
            return attack(logits_fn, x, y, key=key)

        return run

    before = jax.tree.map(np.asarray, state.batch_stats)
    new_state, _ = train.make_step(train.trades(0.3, steps=2, make_attack=spy_attack))(
        state, _batch(), jax.random.key(0)
    )
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, new_state.batch_stats)
    assert any(jax.tree.leaves(changed))
    assert seen and all(a <= 1e-5 and b == 0.0 for a, b in seen), seen


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: train.trades(0.3, beta=-1.0), "beta"),
        (lambda: train.mart(0.3, step_size=0.0), "step_size"),
        (lambda: train.fgsm_rs(0.3, alpha=-0.1), "alpha"),
        (lambda: train.fgsm_rs(optax.linear_schedule(0.0, 0.3, 10)), "max_epsilon"),
        (lambda: train.input_gradient_penalty(1.0, norm="linf"), "norm"),
        (lambda: train.distillation(0.0), "temperature"),
        (lambda: train.pgd_at(_pgd, 0.3, clean_weight=0.5, alternate=True), "alternate"),
        (lambda: train.make_step(train.standard(), replays=0), "replays"),
        (lambda: train.gaussian_start_linf(-1.0), "std"),
    ],
)
def test_bad_options_are_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_objective_with_malformed_aux_is_a_type_error():
    def bad(params, state, batch, key):
        return jnp.sum(jax.tree.leaves(params)[0]), {"loss": 0.0}

    with pytest.raises(TypeError, match="batch_stats"):
        train.make_step(bad, jit=False)(_state(), _batch(), jax.random.key(0))
