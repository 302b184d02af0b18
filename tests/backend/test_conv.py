"""fast_conv_grads / conv_general_dilated: same values and gradients, canonical kernels in loops."""

from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

import advjax
from advjax import backend

_MARK = "name=canonical_conv"  # the custom_jvp_call of a rewritten convolution

CASES = {
    "same": dict(window_strides=(1, 1), padding="SAME"),
    "strided": dict(window_strides=(2, 2), padding=((1, 1), (1, 1))),
    "dilated": dict(window_strides=(1, 1), padding="VALID", rhs_dilation=(2, 2)),
    "grouped": dict(window_strides=(1, 1), padding="SAME", feature_group_count=2),
}


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_both_gradients_match_lax(case, layout):
    kwargs = dict(CASES[case])
    groups = kwargs.get("feature_group_count", 1)
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 4 // groups, 6))
    numbers = ("NHWC", "HWIO", "NHWC")
    if layout == "NCHW":
        x, w, numbers = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), ("NCHW", "OIHW", "NCHW")

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, dimension_numbers=numbers, **kwargs)))

    expected = jax.value_and_grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w)
    got = jax.jit(jax.value_and_grad(loss(backend.conv_general_dilated), argnums=(0, 1)))(x, w)
    _assert_trees_close(got, expected)


class _TinyCNN(nn.Module):
    conv: object = lax.conv_general_dilated

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), conv_general_dilated=self.conv)(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), conv_general_dilated=self.conv)(x))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def _conv_kernel_labels(compiled_text: str) -> set[str]:
    return {
        line.split("dim_labels=")[1].split(",")[0]
        for line in compiled_text.splitlines()
        if " convolution(" in line
    }


def _attack_setup(model, shape):
    """A batch of 4, its labels, the model's variables, and its plain and rewritten logits."""
    x = jax.random.uniform(jax.random.key(0), shape)
    variables = model.init(jax.random.key(1), x)
    plain = lambda x: model.apply(variables, x)  # noqa: E731
    return x, jnp.array([0, 1, 2, 0]), variables, plain, backend.fast_conv_grads(plain)


def test_attack_loops_keep_canonical_kernels_and_equal_results():
    x, y, variables, logits_fn, fast = _attack_setup(_TinyCNN(), (4, 8, 8, 2))
    drop_in = _TinyCNN(conv=backend.conv_general_dilated)
    flax_fast = lambda x: drop_in.apply(variables, x)  # noqa: E731
    attack = advjax.pgd(0.1, steps=2)
    key = jax.random.key(2)
    expected = jax.jit(attack, static_argnums=0)(logits_fn, x, y, key=key)
    for fn in (fast, flax_fast):
        compiled = (
            jax.jit(lambda x, y, k, fn=fn: attack(fn, x, y, key=k)).lower(x, y, key).compile()
        )
        np.testing.assert_allclose(np.asarray(compiled(x, y, key)), np.asarray(expected), atol=1e-6)
        labels = _conv_kernel_labels(compiled.as_text())
        assert labels and all(label.endswith("01io->b01f") for label in labels), labels
    # vmapped (as with_restarts and over_epsilons do): same gradients.
    grad = jax.vmap(jax.grad(lambda x, fn: fn(x[None]).sum()), in_axes=(0, None))
    np.testing.assert_allclose(
        np.asarray(jax.jit(grad, static_argnums=1)(x, fast)),
        np.asarray(jax.jit(grad, static_argnums=1)(x, logits_fn)),
        atol=1e-6,
    )


def test_fast_conv_grads_keeps_pytrees_and_nested_jit():
    w = jax.random.normal(jax.random.key(0), (3, 3, 1, 2))

    @jax.jit
    def inner(x):
        return lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def fn(x):
        return {"out": inner(x), "sum": inner(x).sum()}

    x = jnp.ones((1, 5, 5, 1))
    got = backend.fast_conv_grads(fn)(x)
    assert set(got) == {"out", "sum"}
    np.testing.assert_allclose(np.asarray(got["out"]), np.asarray(fn(x)["out"]), atol=1e-6)
    jaxpr = str(jax.make_jaxpr(backend.fast_conv_grads(fn))(x))
    assert _MARK in jaxpr
    # Wrapping twice is wrapping once; concrete arguments call fn itself.
    fast = backend.fast_conv_grads(fn)
    assert backend.fast_conv_grads(fast) is fast


def _assert_trees_close(got, expected):
    """Equal up to float32 summation order: 1e-5 of each leaf's largest magnitude.

    Strided convolutions of few input features run as a matrix product, whose
    sums run in another order than the primitive's; a kernel gradient sums over
    batch and positions, so an element near zero may differ by more than 1e-5
    of itself.
    """
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        scale = max(1.0, float(np.max(np.abs(np.asarray(b)), initial=0.0)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * scale)


def test_forward_mode_matches_lax():
    model = _TinyCNN()
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 2))
    variables = model.init(jax.random.key(1), x)
    plain = lambda x: model.apply(variables, x)  # noqa: E731
    fast = backend.fast_conv_grads(plain)
    tangent = jax.random.normal(jax.random.key(2), x.shape)
    for got, expected in (
        (jax.jvp(fast, (x,), (tangent,)), jax.jvp(plain, (x,), (tangent,))),
        (jax.jit(jax.jacfwd(fast))(x[:1]), jax.jacfwd(plain)(x[:1])),
        (jax.linearize(fast, x)[1](tangent), jax.linearize(plain, x)[1](tangent)),
        (jax.hessian(lambda x: fast(x).sum())(x[:1]), jax.hessian(lambda x: plain(x).sum())(x[:1])),
    ):
        _assert_trees_close(got, expected)
    # Parameter gradients (training through the wrapped model) are unchanged too.
    loss = lambda v, conv: jnp.sum(  # noqa: E731
        jnp.sin(conv(lambda x: model.apply(v, x))(x))
    )
    got = jax.jit(jax.grad(lambda v: loss(v, backend.fast_conv_grads)))(variables)
    expected = jax.grad(lambda v: loss(v, lambda f: f))(variables)
    _assert_trees_close(got, expected)


def test_library_logits_functions_use_it_by_default_on_cpu():
    from advjax import models, train

    model = models.get_model("small_cnn")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    default = models.eval_logits_fn(model, variables)
    plain = models.eval_logits_fn(model, variables, fast_conv_grads=False)
    assert _MARK not in str(jax.make_jaxpr(plain)(x))
    assert (_MARK in str(jax.make_jaxpr(default)(x))) == (jax.default_backend() == "cpu")
    forced = models.eval_logits_fn(model, variables, fast_conv_grads=True)
    np.testing.assert_array_equal(np.asarray(forced(x)), np.asarray(plain(x)))
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1)
    )
    assert _MARK in str(jax.make_jaxpr(train.eval_logits(state, fast_conv_grads=True))(x))
    assert _MARK not in str(jax.make_jaxpr(train.eval_logits(state, fast_conv_grads=False))(x))
    # No convolution: the function is called as it is.
    mlp = models.get_model("mlp")
    mlp_vars = models.init_model(mlp, jax.random.key(0), (28, 28, 1))
    jaxprs = [
        str(jax.make_jaxpr(models.eval_logits_fn(mlp, mlp_vars, fast_conv_grads=flag))(x))
        for flag in (True, False)
    ]
    assert jaxprs[0] == jaxprs[1]


def test_certify_bounds_are_unchanged():
    from advjax import certify

    model = _TinyCNN()
    x = jax.random.uniform(jax.random.key(0), (1, 8, 8, 2))
    variables = model.init(jax.random.key(1), x)
    plain = lambda x: model.apply(variables, x)  # noqa: E731
    fast = backend.fast_conv_grads(plain)
    lower, upper = x - 0.05, x + 0.05
    for bounds in (certify.interval_bounds, certify.crown_ibp_bounds, certify.crown_bounds):
        got, expected = bounds(fast)(lower, upper), bounds(plain)(lower, upper)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


_POOL_MARK = "name=tiled_max_pool"
_SCATTER = re.compile(r" (select-and-)?scatter\(")  # the custom_jvp_call of a rewritten max pooling

POOLS = {
    "valid 2x2": dict(window_shape=(2, 2), strides=(2, 2), padding="VALID"),
    "same 2x2, odd size (padded)": dict(window_shape=(2, 2), strides=(2, 2), padding="SAME"),
    "3x3 stride 3": dict(window_shape=(3, 3), strides=(3, 3), padding="VALID"),
    "1x3 stride 1x3": dict(window_shape=(1, 3), strides=(1, 3), padding="SAME"),
}


def _pool_inputs():
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    # Post-ReLU, quantised: many windows hold several equal maxima (ties).
    ties = jnp.round(jnp.maximum(x, 0.0) * 2) / 2
    return {"random": x, "ties": ties}


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_tiling_max_pool_is_rewritten_with_bit_equal_values_and_derivatives(case, jit):
    def plain(x):
        return nn.max_pool(x, **POOLS[case])

    fast = backend.fast_conv_grads(plain)
    wrap = jax.jit if jit else (lambda f: f)
    for name, x in _pool_inputs().items():
        assert _POOL_MARK in str(jax.make_jaxpr(fast)(x))
        weights = jax.random.normal(jax.random.key(1), plain(x).shape)
        tangent = jax.random.normal(jax.random.key(2), x.shape)
        grad = wrap(jax.grad(lambda x, w=weights: jnp.sum(fast(x) * w)))(x)
        jvp = wrap(lambda t, x=x: jax.jvp(fast, (x,), (t,))[1])(tangent)
        expected_grad = jax.grad(lambda x, w=weights: jnp.sum(plain(x) * w))(x)
        np.testing.assert_array_equal(np.asarray(wrap(fast)(x)), np.asarray(plain(x)))
        np.testing.assert_array_equal(np.asarray(grad), np.asarray(expected_grad), err_msg=name)
        if name == "random":  # no ties: one maximum per window, every rule agrees
            expected_jvp = jax.jvp(plain, (x,), (tangent,))[1]
            np.testing.assert_array_equal(np.asarray(jvp), np.asarray(expected_jvp))
        # At ties JAX's own forward rule picks another maximum than its reverse
        # rule; the rewrite picks the first in both, so jvp and vjp are transposes.
        np.testing.assert_allclose(
            float(jnp.vdot(weights, jvp)), float(jnp.vdot(grad, tangent)), rtol=1e-5
        )


def test_overlapping_max_pool_is_left_alone():
    def overlapping(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")

    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
    traced = str(jax.make_jaxpr(backend.fast_conv_grads(overlapping))(x))
    assert _POOL_MARK not in traced and "reduce_window_max" in traced


class _PoolCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3))(x)), (2, 2), strides=(2, 2), padding="SAME")
        x = nn.max_pool(nn.relu(nn.Conv(6, (3, 3))(x)), (2, 2), strides=(2, 2))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_attack_loop_has_no_pooling_scatter_and_equal_results():
    x, y, _, plain, fast = _attack_setup(_PoolCNN(), (4, 9, 9, 1))
    attack = advjax.pgd(0.1, steps=3)
    key = jax.random.key(2)

    def lowered(fn):
        return jax.jit(lambda x, y, k: attack(fn, x, y, key=k)).lower(x, y, key)

    # The pooling gradient is a select-and-scatter, which XLA:CPU may lower to a scatter
    # (with its default emitters; the test tier's compile flags lower it otherwise).
    plain_lowered, fast_lowered = lowered(plain), lowered(fast)
    assert "select_and_scatter" in plain_lowered.as_text()
    assert "select_and_scatter" not in fast_lowered.as_text()
    plain_program, fast_program = plain_lowered.compile(), fast_lowered.compile()
    assert not _SCATTER.search(fast_program.as_text())
    np.testing.assert_array_equal(
        np.asarray(fast_program(x, y, key)), np.asarray(plain_program(x, y, key))
    )
    from advjax import certify

    lower, upper = x[:1] - 0.05, x[:1] + 0.05  # IBP bounds max pooling; CROWN has no rule
    got, expected = (
        certify.interval_bounds(fast)(lower, upper),
        certify.interval_bounds(plain)(lower, upper),
    )
    _assert_trees_close(got, expected)
    # CROWN's error names the same place in the model's code for both.
    messages = []
    for fn in (plain, fast):
        with pytest.raises(certify.UnsupportedPrimitiveError, match="reduce_window_max") as error:
            certify.crown_bounds(fn)(lower, upper)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    # The rewrite's own module is never named (this test file's name also ends in _conv.py).
    assert not re.search(r"advjax[/\\]backend[/\\]_conv\.py", messages[1])


_STRIDED_LAYOUTS = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
}


@st.composite
def _strided_convs(draw):
    """A strided convolution: sizes, kernel (often a whole number of strides), stride, padding.

    1-4 input features run as a matrix product, more through the blocked input tangent
    when the kernel is a whole number of strides, else the swapped-kernel rule.
    """
    spatial = draw(st.sampled_from([1, 2]))
    strides = [draw(st.integers(1, 3)) for _ in range(spatial)]
    if all(s == 1 for s in strides):
        strides[0] = 2
    if draw(st.booleans()):
        kernel = [s * draw(st.integers(1, 2)) for s in strides]
    else:
        kernel = [draw(st.integers(1, 5)) for _ in range(spatial)]
    sizes = [draw(st.integers(k, k + 7)) for k in kernel]
    padding = [(draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(spatial)]
    assume(all(n + lo + hi >= k for n, (lo, hi), k in zip(sizes, padding, kernel, strict=True)))
    features = draw(st.sampled_from([1, 2, 4, 6]))
    return spatial, sizes, kernel, strides, padding, features, draw(st.booleans())


@settings(max_examples=15, deadline=None, derandomize=True)
@given(_strided_convs())
def test_strided_convs_keep_the_primitives_values_and_derivatives(conv):
    """Value, both reverse-mode gradients and the forward-mode tangent, against lax."""
    spatial, sizes, kernel, strides, padding, features, channels_first = conv
    numbers = _STRIDED_LAYOUTS[spatial]
    x = jax.random.normal(jax.random.key(0), (2, *sizes, features))
    w = jax.random.normal(jax.random.key(1), (*kernel, features, 3))
    if channels_first:
        x, w = jnp.moveaxis(x, -1, 1), jnp.moveaxis(w, (-1, -2), (0, 1))
        lhs, rhs, out = numbers
        numbers = (
            lhs[0] + lhs[-1] + lhs[1:-1],
            rhs[-1] + rhs[-2] + rhs[:-2],
            out[0] + out[-1] + out[1:-1],
        )

    def conv_fn(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers)

    fast = backend.fast_conv_grads(conv_fn)
    jaxpr = str(jax.make_jaxpr(fast)(x, w))
    assert ("dot_general" in jaxpr) == (features <= 4)

    @functools.partial(jax.jit, static_argnums=0)
    def derivatives(fn, x, w):  # one program per side: value, both gradients, a tangent
        loss = lambda x, w: jnp.sum(jnp.sin(fn(x, w)))  # noqa: E731
        return (
            fn(x, w),
            jax.value_and_grad(loss, argnums=(0, 1))(x, w),
            jax.jvp(lambda x: fn(x, w), (x,), (jnp.cos(x),))[1],
        )

    _assert_trees_close(derivatives(fast, x, w), derivatives(conv_fn, x, w))


@pytest.mark.parametrize(
    ("features", "strides", "rewritten"),
    [(1, (2, 2), True), (4, (2, 2), True), (8, (2, 2), False), (1, (1, 1), False)],
)
def test_only_strided_convs_of_few_input_features_become_a_matrix_product(
    features, strides, rewritten
):
    w = jnp.ones((4, 4, features, 16))
    fn = lambda x: lax.conv_general_dilated(  # noqa: E731
        x, w, strides, ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    jaxpr = str(jax.make_jaxpr(backend.fast_conv_grads(fn))(jnp.ones((2, 28, 28, features))))
    assert ("dot_general" in jaxpr) == rewritten
    assert (_MARK in jaxpr) == (not rewritten)


def _input_gradient_program(features, kernel):
    w = jax.random.normal(jax.random.key(0), (kernel, kernel, features, 8))
    fn = lambda x: jnp.sin(  # noqa: E731
        lax.conv_general_dilated(
            x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    ).sum()
    x = jnp.ones((4, 14, 14, features))

    def loop(fn):  # an attack's loop: the input gradient inside a while
        return jax.jit(lambda x: lax.fori_loop(0, 2, lambda i, z: z + 0.1 * jax.grad(fn)(z), x))

    fast, plain = loop(backend.fast_conv_grads(fn)), loop(fn)
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-5)
    return fast.lower(x).compile().as_text()


def test_input_gradient_of_a_kernel_of_whole_strides_is_a_stride_1_convolution():
    """4x4 stride 2 over 16 features: no convolution of a zero-interleaved gradient."""
    program = _input_gradient_program(features=16, kernel=4)
    convolutions = [line for line in program.splitlines() if " convolution(" in line]
    assert len(convolutions) == 2 and not any("lhs_dilate" in c for c in convolutions)
    # 3x3 stride 2 (not a whole number of strides): the swapped-kernel rule.
    program = _input_gradient_program(features=16, kernel=3)
    assert any("lhs_dilate" in line for line in program.splitlines() if " convolution(" in line)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "strides", "padding"),
    [
        ((0, 8, 8, 1), (3, 3, 1, 4), (2, 2), "SAME"),  # batch 0, matrix-product rule
        ((0, 8, 8, 8), (4, 4, 8, 4), (2, 2), "SAME"),  # batch 0, blocked input tangent
        ((2, 8, 8, 1), (3, 3, 1, 0), (2, 2), "SAME"),  # no output features
        ((2, 2, 2, 1), (9, 9, 1, 4), (3, 3), "VALID"),  # kernel larger than the input
        ((2, 9, 9, 8), (4, 4, 8, 4), (2, 2), ((-8, 0), (0, 0))),  # cropped to nothing
    ],
)
def test_empty_strided_convolutions_are_left_to_the_primitive(x_shape, w_shape, strides, padding):
    x, w = jnp.ones(x_shape), jnp.ones(w_shape)

    def fn(x, w):
        numbers = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers)

    def shapes(fn):
        value = jax.jit(fn)(x, w)
        grads = jax.grad(lambda x, w: fn(x, w).sum(), argnums=(0, 1))(x, w)
        return value.shape, [g.shape for g in grads]

    assert shapes(backend.fast_conv_grads(fn)) == shapes(fn)


def test_operands_without_inputs_do_not_stop_the_rewrite():
    w = jax.random.normal(jax.random.key(1), (9, 2, 4))

    def fn(x):
        y = lax.conv_general_dilated(x, w, (2,), "VALID", dimension_numbers=("NCW", "OIW", "NCW"))
        return (y * jnp.arange(y.size).reshape(y.shape)).sum()

    x = jnp.ones((1, 2, 9))
    np.testing.assert_allclose(
        jax.jit(jax.grad(backend.fast_conv_grads(fn)))(x), jax.grad(fn)(x), rtol=1e-5
    )
