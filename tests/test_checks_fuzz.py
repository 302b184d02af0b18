"""Fuzz: every public attack entry point, driven with generated inputs of the issue-14 kinds.

Each case is batch 1 or odd sizes, 2-4 classes, integer or one-hot labels, eps 0 or
positive (negative / NaN / inf at build time), values in range, on the range's ends,
out of range, NaN or inf, a NaN-gradient model, float16 / bfloat16 / float32, called
eagerly or under ``jax.jit``. The assertion is exact: a case with an invalid input
raises a clear error that names what is wrong, and a valid case returns a result that
holds every invariant measured in float64 on the returned values (dtype and shape of
the input, finite, inside the ball, inside the box). A valid input never raises.

100 cases per entry point run by default (hypothesis, derandomized, so every run checks
the same cases); ``pytest -m slow`` runs 10,000 per attack.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import advjax
from advjax.attacks import with_restarts, worst_case
from advjax.attacks._transforms import early_stop, targeted
from advjax.certify import UnsupportedPrimitiveError

FEATURES = 6
FAST_CASES = 100  # per entry point in the default suite; -m slow runs 10,000 per attack


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Starts and ends with empty compilation caches: the fuzz compiles a few hundred programs."""
    jax.clear_caches()
    yield
    for cached in (_built, _jitted, _bounds, _crown, _train_step):
        cached.cache_clear()
    jax.clear_caches()


_W = np.random.default_rng(0).normal(size=(FEATURES, 4)).astype(np.float32)


def _linear(classes):
    w = jnp.asarray(_W[:, :classes])
    return lambda x: x.reshape(x.shape[0], -1) @ w


def _nan_gradient(classes):
    w = jnp.asarray(40.0 * _W[:, :classes])
    return lambda x: jnp.log(jax.nn.softmax(x.reshape(x.shape[0], -1) @ w))


MODELS = {
    "linear2": (_linear(2), 2),
    "linear3": (_linear(3), 3),
    "linear4": (_linear(4), 4),
    "nan_grad4": (_nan_gradient(4), 4),
}

# (batch, model, dtype, label format, jit allowed): few shapes, so compiled programs are reused.
CONFIGS = [
    (1, "linear2", jnp.float32, "int", True),
    (3, "linear3", jnp.bfloat16, "one_hot", True),
    (2, "nan_grad4", jnp.float16, "int", False),
    (3, "linear4", jnp.float32, "one_hot_int", False),
]

# name: (builder(eps) -> attack, norm of eps (None: no ball), fewest classes)
ATTACKS = {
    "fgsm": (lambda e: advjax.fgsm(e), "linf", 2),
    "fgm": (lambda e: advjax.fgm(e), "l2", 2),
    "pgd": (lambda e: advjax.pgd(e, steps=3), "linf", 2),
    "pgd_l2": (lambda e: advjax.pgd(e, steps=3, norm="l2"), "l2", 2),
    "pgd_l1": (lambda e: advjax.pgd(e, steps=3, norm="l1"), "l1", 2),
    "pgd_restarts": (lambda e: advjax.pgd(e, steps=2, restarts=2), "linf", 2),
    "bim": (lambda e: advjax.bim(e, steps=2, step_size=0.05), "linf", 2),
    "mifgsm": (lambda e: advjax.mifgsm(e, steps=3), "linf", 2),
    "apgd": (lambda e: advjax.apgd(e, steps=4), "linf", 2),
    "apgd_dlr": (lambda e: advjax.apgd(e, steps=4, loss="dlr"), "linf", 3),
    "apgd_t": (lambda e: advjax.apgd_t(e, steps=3, num_targets=2), "linf", 4),
    "cw_l2": (lambda e: advjax.cw_l2(e, steps=3, binary_search_steps=2), "l2", 2),
    "ead": (lambda e: advjax.attacks.ead(e, steps=3, binary_search_steps=2), "l1", 2),
    "deepfool": (lambda e: advjax.deepfool(e, steps=3), "l2", 2),
    "fab": (lambda e: advjax.fab(e, steps=3, num_targets=None), "linf", 2),
    "fab_t": (lambda e: advjax.fab(e, steps=3, num_targets=1), "linf", 2),
    "ddn": (lambda e: advjax.ddn(e, steps=3), "l2", 2),
    "square": (lambda e: advjax.square(e, queries=4), "linf", 2),
    "hopskipjump": (
        lambda e: advjax.hopskipjump(
            e, iterations=1, grad_samples=4, max_grad_samples=4, init_samples=4, search_steps=2
        ),
        "l2",
        2,
    ),
    "one_pixel": (lambda e: advjax.one_pixel(population=4, generations=1), None, 2),
    "jsma": (lambda e: advjax.jsma(gamma=0.5), None, 2),
    "with_restarts": (lambda e: with_restarts(advjax.fgsm(e, random_start=True), 2), "linf", 2),
    "worst_case": (lambda e: worst_case([advjax.fgsm(e), advjax.pgd(e, steps=2)]), "linf", 2),
    "early_stop": (lambda e: early_stop(advjax.pgd(e, steps=2)), "linf", 2),
    "targeted": (lambda e: targeted(advjax.pgd(e, steps=2, targeted=True), "next"), "linf", 2),
}

INPUT_FAULTS = ("none", "boundary", "nan", "inf", "above", "below")
LABEL_FAULTS = ("none", "too_large", "negative", "bad_row")
CLEAR_ERROR = (
    "outside the declared valid range",
    "non-finite",
    "NaN",
    "classes",
    "labels y",
    "label rows",
    "eps",
    "sigma",
)


@functools.cache
def _built(name, eps):
    return ATTACKS[name][0](eps)


@functools.cache
def _jitted(name, eps):
    return jax.jit(_built(name, eps), static_argnums=0)


def _case(draw_values, batch, classes, dtype, labels, input_fault, label_fault):
    rng = np.random.default_rng(draw_values)
    x = rng.uniform(size=(batch, FEATURES))
    if input_fault == "boundary":
        x[0, 0], x[-1, -1] = 0.0, 1.0
    elif input_fault == "nan":
        x[0, 1] = np.nan
    elif input_fault == "inf":
        x[-1, 0] = np.inf
    elif input_fault == "above":
        x[0, 2] = 1.5
    elif input_fault == "below":
        x[-1, 3] = -0.25
    y = rng.integers(0, classes, size=batch)
    if label_fault == "too_large":
        y[0] = classes
    elif label_fault == "negative":
        y[-1] = -1
    x = jnp.asarray(x, dtype)
    if labels == "int" or label_fault in ("too_large", "negative"):
        return x, jnp.asarray(y, jnp.int32)
    rows = np.eye(classes, dtype=np.float32)[y]
    if label_fault == "bad_row":
        rows[0] = 0.0
    return x, jnp.asarray(rows, jnp.int32 if labels == "one_hot_int" else jnp.float32)


def _check_invariants(x, out, eps, norm):
    x64 = np.asarray(x.astype(jnp.float32), np.float64)
    out = out[0] if isinstance(out, tuple) else out
    assert out.dtype == x.dtype and out.shape == x.shape
    o64 = np.asarray(out.astype(jnp.float32), np.float64)
    assert np.all(np.isfinite(o64))
    assert np.all((o64 >= 0.0) & (o64 <= 1.0))
    if norm is None:
        return
    delta = (o64 - x64).reshape(len(x64), -1)
    order = {"linf": np.inf, "l2": 2, "l1": 1}[norm]
    assert np.all(np.linalg.norm(delta, ord=order, axis=-1) <= eps * (1 + 1e-6))


def _run_case(name, data):
    builder, norm, min_classes = ATTACKS[name]
    batch, model, dtype, labels, jit_ok = data.draw(st.sampled_from(CONFIGS), "config")
    logits_fn, classes = MODELS[model]
    eps = data.draw(st.sampled_from([0.0, 0.1]), "eps")
    input_fault = data.draw(st.sampled_from(INPUT_FAULTS), "input_fault")
    label_fault = data.draw(st.sampled_from(LABEL_FAULTS), "label_fault")
    if labels == "int" and label_fault == "bad_row":
        label_fault = "none"
    use_jit = jit_ok and data.draw(st.booleans(), "jit")
    seed = data.draw(st.integers(0, 2**16), "seed")
    x, y = _case(seed, batch, classes, dtype, labels, input_fault, label_fault)
    attack = _jitted(name, eps) if use_jit else _built(name, eps)
    invalid = input_fault in ("nan", "inf", "above", "below") or label_fault != "none"
    if invalid or classes < min_classes:
        with pytest.raises(Exception) as error:  # noqa: PT011 - the message is checked below
            jax.block_until_ready(attack(logits_fn, x, y, key=jax.random.key(seed)))
        message = str(error.value)
        assert any(fragment in message for fragment in CLEAR_ERROR), message[-500:]
        if not use_jit:
            assert isinstance(error.value, (ValueError, TypeError)), type(error.value)
        return
    out = attack(logits_fn, x, y, key=jax.random.key(seed))
    _check_invariants(x, out, eps, norm)


def _fuzz(max_examples):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
@_fuzz(FAST_CASES)
@given(data=st.data())
def test_fuzz_attack(name, data):
    _run_case(name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ATTACKS))
@_fuzz(10_000)
@given(data=st.data())
def test_fuzz_attack_slow(name, data):
    _run_case(name, data)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@_fuzz(FAST_CASES)
@given(eps=st.sampled_from([-0.1, -1e-9, float("nan"), float("inf"), -float("inf")]))
def test_fuzz_bad_budget_is_refused_at_build(name, eps):
    if ATTACKS[name][1] is None:
        return  # no budget to give
    with pytest.raises(ValueError, match="eps"):
        ATTACKS[name][0](eps)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd", "square"])
def test_integer_inputs_are_refused_with_the_fix(name):
    x = jnp.zeros((2, FEATURES), jnp.uint8)
    with pytest.raises(TypeError, match="astype"):
        _built(name, 0.1)(MODELS["linear3"][0], x, jnp.array([0, 1]), key=jax.random.key(0))


# Interval bounds: sound (no sampled value outside) and NaN-free on any box ---------------


def _interval_fn(kind):
    w = jnp.asarray(_W[:, :3])
    if kind == "dense_relu":
        return lambda v: jax.nn.relu(v @ w)
    if kind == "division":
        return lambda v: v[..., 0] / (v[..., 1] - 0.5)
    if kind == "product":
        return lambda v: v[..., 0] * v[..., 1] - jnp.abs(v[..., 2]) ** 2
    return lambda v: jnp.tanh(v @ w) * 2.0 + jnp.exp(-jnp.abs(v[..., :3]))


_ends = st.one_of(
    st.floats(-3, 3, allow_nan=False, width=32), st.sampled_from([-np.inf, np.inf, 0.0])
)


@_fuzz(FAST_CASES)
@given(
    kind=st.sampled_from(["dense_relu", "division", "product", "smooth"]),
    ends=st.lists(st.tuples(_ends, _ends), min_size=FEATURES, max_size=FEATURES),
    seed=st.integers(0, 2**16),
)
def test_fuzz_interval_bounds(kind, ends, seed):
    lower = np.array([min(a, b) for a, b in ends], np.float32)
    upper = np.array([max(a, b) for a, b in ends], np.float32)
    assume(not np.any((lower == upper) & np.isinf(lower)))  # [inf, inf] holds no real number
    fn = _interval_fn(kind)
    lo, hi = _bounds(kind)(jnp.asarray(lower), jnp.asarray(upper))
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    assert not np.any(np.isnan(lo)) and not np.any(np.isnan(hi))
    assert np.all(lo <= hi)
    rng = np.random.default_rng(seed)
    finite_low = np.where(np.isfinite(lower), lower, -1e3)
    finite_high = np.where(np.isfinite(upper), upper, 1e3)
    samples = rng.uniform(finite_low, finite_high, size=(64, FEATURES)).astype(np.float32)
    samples[0], samples[1] = finite_low, finite_high
    values = np.asarray(jax.vmap(fn)(jnp.asarray(samples)), np.float64)
    ok = ~np.isnan(values)
    slack = 1e-4 * (1 + np.abs(values))
    assert np.all(~ok | (values >= lo - slack)) and np.all(~ok | (values <= hi + slack))
    if kind == "dense_relu":  # CROWN: the same soundness on any box
        lo, hi = _crown()(jnp.asarray(lower), jnp.asarray(upper))
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        assert not np.any(np.isnan(lo)) and not np.any(np.isnan(hi))
        assert np.all(values >= lo - slack) and np.all(values <= hi + slack)


@functools.cache
def _crown():
    return jax.jit(advjax.certify.crown_bounds(_interval_fn("dense_relu")))


@functools.cache
def _bounds(kind):
    return jax.jit(advjax.certify.interval_bounds(_interval_fn(kind)))


# Evaluation, AutoAttack, certification, smoothing and training steps -------------------

EVAL_EPSILONS = [0.0, 0.1]
AUTOATTACK_ENSEMBLE = {
    "apgd-ce": advjax.apgd(0.1, steps=3),
    "square": advjax.square(0.1, queries=4),
}


def _entry_case(data):
    batch, model, dtype, labels, _ = data.draw(st.sampled_from(CONFIGS), "config")
    logits_fn, classes = MODELS[model]
    input_fault = data.draw(st.sampled_from(INPUT_FAULTS), "input_fault")
    label_fault = data.draw(st.sampled_from(LABEL_FAULTS), "label_fault")
    if labels == "int" and label_fault == "bad_row":
        label_fault = "none"
    seed = data.draw(st.integers(0, 2**16), "seed")
    x, y = _case(seed, batch, classes, dtype, labels, input_fault, label_fault)
    invalid = input_fault in ("nan", "inf", "above", "below") or label_fault != "none"
    return logits_fn, classes, x, y, invalid, seed


def _expect_clear_error(call):
    with pytest.raises((ValueError, TypeError)) as error:
        jax.block_until_ready(call())
    message = str(error.value)
    assert any(fragment in message for fragment in CLEAR_ERROR), message[-500:]


def _int_labels(y):
    return np.asarray(y if y.ndim == 1 else np.argmax(np.asarray(y), -1))


@_fuzz(FAST_CASES)
@given(data=st.data())
def test_fuzz_evaluate(data):
    logits_fn, _, x, y, invalid, seed = _entry_case(data)

    def call():
        return advjax.evaluation.evaluate(
            logits_fn,
            x,
            y,
            {"fgsm": advjax.fgsm},
            EVAL_EPSILONS,
            key=jax.random.key(seed),
            diagnostics=False,
        )

    if invalid:
        _expect_clear_error(call)
        return
    report = call()
    labels = _int_labels(y)
    correct = np.asarray(predicted(logits_fn, x)) == labels
    x_fgsm = _built("fgsm", 0.1)(logits_fn, x, y, key=jax.random.key(seed))
    still = correct & (np.asarray(predicted(logits_fn, x_fgsm)) == labels)
    # Recounted here: clean, eps 0 (nothing moves), FGSM at 0.1 (deterministic).
    assert report.clean_accuracy == pytest.approx(correct.mean())
    assert report.attacks[0].robust_accuracy == pytest.approx([correct.mean(), still.mean()])
    assert report.attacks[0].rejected == {k: [0, 0] for k in report.attacks[0].rejected}
    x32 = jnp.asarray(x, jnp.float32)
    grad = jax.grad(lambda v: jnp.sum(advjax.losses.ce(logits_fn(v), jnp.asarray(labels))))(x32)
    nan_rows = int(np.sum(~np.all(np.isfinite(np.asarray(grad)), -1)))
    assert report.diagnostics["non_finite_gradient_examples"] == nan_rows


@_fuzz(FAST_CASES)
@given(data=st.data())
def test_fuzz_autoattack(data):
    logits_fn, _, x, y, invalid, seed = _entry_case(data)

    def call():
        return advjax.evaluation.autoattack(
            logits_fn,
            x,
            y,
            eps=0.1,
            key=jax.random.key(seed),
            version="custom",
            attacks=AUTOATTACK_ENSEMBLE,
            diagnostics=False,
        )

    if invalid:
        _expect_clear_error(call)
        return
    result = call()
    clean = np.asarray(predicted(logits_fn, x)) == _int_labels(y)
    assert np.all(~result.robust | clean) and result.robust_accuracy <= result.clean_accuracy
    broken = clean & ~result.robust
    delta = np.asarray(result.x_adv, np.float64) - np.asarray(x.astype(jnp.float32), np.float64)
    assert np.all(np.abs(delta[broken]) <= 0.1 * (1 + 1e-6))
    assert np.all((result.x_adv >= 0) & (result.x_adv <= 1))


def predicted(logits_fn, x):
    return advjax.attacks.predicted_class(logits_fn(x.astype(jnp.float32)))


@_fuzz(FAST_CASES)
@given(data=st.data(), method=st.sampled_from(["ibp", "crown"]))
def test_fuzz_certified_accuracy(data, method):
    logits_fn, _, x, y, invalid, seed = _entry_case(data)
    eps = data.draw(st.sampled_from([0.0, 0.05, -0.05, float("nan")]), "eps")

    def call():
        return advjax.certify.certified_accuracy(logits_fn, x, y, eps, method=method)

    if invalid or not eps >= 0:
        _expect_clear_error(call)
        return
    if method == "crown" and logits_fn is MODELS["nan_grad4"][0]:
        with pytest.raises(UnsupportedPrimitiveError, match="reduce_max"):
            call()  # softmax has no CROWN rule: a clear error that names the operation
        return
    certified = np.asarray(call())
    labels = _int_labels(y)
    clean = np.asarray(predicted(logits_fn, x)) == labels
    x_adv = _built("pgd", eps)(logits_fn, x, y, key=jax.random.key(seed))
    attacked = np.asarray(predicted(logits_fn, x_adv)) == labels
    assert np.all(~certified | (clean & attacked))  # sound: no certified point is broken


@_fuzz(FAST_CASES)
@given(data=st.data(), sigma=st.sampled_from([0.25, 0.0, -1.0, float("nan")]))
def test_fuzz_smoothing_counts(data, sigma):
    logits_fn, _, x, _, invalid, seed = _entry_case(data)

    def call():
        return advjax.certify.sample_counts(
            logits_fn, x[0], sigma=sigma, n=16, key=jax.random.key(seed), batch_size=8
        )

    if (invalid and not np.all(np.isfinite(np.asarray(x[0], np.float32)))) or not sigma > 0:
        _expect_clear_error(call)
        return
    counts = np.asarray(call())
    # Every noisy copy votes once, except those whose logits are unusable (NaN).
    full = logits_fn is not MODELS["nan_grad4"][0]
    assert counts.min() >= 0 and (counts.sum() == 16 if full else counts.sum() <= 16)


@functools.cache
def _train_step(classes):
    import optax
    from flax import linen as nn

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            return nn.Dense(classes)(x.reshape(x.shape[0], -1))

    model = Linear()
    params = model.init(jax.random.key(0), jnp.zeros((1, FEATURES)))["params"]
    state = advjax.train.TrainState.create(
        apply_fn=model.apply, params=params, tx=optax.sgd(0.1), batch_stats={}
    )
    return state, advjax.train.make_step(advjax.train.standard())


@_fuzz(FAST_CASES)
@given(data=st.data())
def test_fuzz_training_step(data):
    _, classes, x, y, _, seed = _entry_case(data)
    state, step = _train_step(classes)

    def call():
        fresh = jax.tree.map(jnp.copy, state)  # the step donates its state
        return step(fresh, (x.astype(jnp.float32), y), jax.random.key(seed))[1]["loss"]

    # Training checks finiteness and labels; the input range is the attacks' to check.
    x32 = np.asarray(x.astype(jnp.float32))
    label_bad = y.ndim == 1 and (np.min(np.asarray(y)) < 0 or np.max(np.asarray(y)) >= classes)
    label_bad = label_bad or (y.ndim == 2 and not np.allclose(np.asarray(y).sum(-1), 1))
    if not np.all(np.isfinite(x32)) or label_bad:
        with pytest.raises(Exception) as error:  # noqa: PT011 - message checked below
            jax.block_until_ready(call())
        assert any(fragment in str(error.value) for fragment in CLEAR_ERROR)
        return
    assert np.isfinite(float(call()))
