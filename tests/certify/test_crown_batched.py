"""The fast formulations of the CROWN backward pass give the bounds of the plain one.

* convolutions are transposed with their rows folded into the batch dimension and a
  custom VJP (``_FOLD_CONV_ROWS``), in chunks of rows (``_CHUNK_ELEMENTS``);
* certified training records one tape with batched boxes (``_record_batched``);
* full CROWN refines pre-activations in chunks of identity rows and skips boxes that
  IBP already computes exactly (``_ibp_is_exact``).

The reference is the plain formulation: ``jax.vmap`` of a per-example tape whose
affine steps are transposed by ``jax.vmap`` of ``jax.vjp``, without chunks.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advjax.certify._crown as crown_mod
from advjax.certify import (
    batched_margin_lower_bounds,
    crown_bounds,
    crown_ibp_bounds,
    margin_bounds,
    specification_matrix,
)

KEY = jax.random.PRNGKey(3)


class _GeneralConvNet(nn.Module):
    """Convolutions with strides, asymmetric padding, dilations and feature groups."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), strides=2, padding=((1, 2), (0, 1)))(x)
        x = nn.relu(x)
        x = nn.Conv(
            4,
            (2, 3),
            kernel_dilation=(2, 1),
            input_dilation=(1, 2),
            feature_group_count=2,
            padding=((1, 2), (2, 1)),
        )(x)
        x = nn.relu(x)
        x = nn.Conv(6, (3, 3), strides=(1, 2), padding="VALID", feature_group_count=2)(x)
        x = nn.relu(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(5)(nn.relu(nn.Dense(12)(x)))


def _flax_net():
    model = _GeneralConvNet()
    variables = model.init(KEY, jnp.zeros((1, 9, 9, 4)))
    return model, variables


def _lax_net(key):
    """A per-example net with non-NHWC dimension numbers (batch axis not first)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w1 = 0.4 * jax.random.normal(k1, (6, 2, 3, 2))  # OIHW, 2 groups of 2 inputs
    b1 = 0.1 * jax.random.normal(k4, (6,))
    w2 = 0.3 * jax.random.normal(k2, (2, 3, 6, 5))  # HWIO

    def conv1(x):  # x: (4, 7, 8) CHW
        h = jax.lax.conv_general_dilated(
            x[None],
            w1,
            window_strides=(2, 1),
            padding=((1, 0), (2, 1)),
            lhs_dilation=(1, 2),
            rhs_dilation=(2, 1),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=2,
        )
        return jnp.maximum(h + b1[None, :, None, None], 0.0)

    def conv2(h):  # NCHW -> HWCN input, NHWC output
        h = jnp.transpose(h, (2, 3, 1, 0))
        return jax.lax.conv_general_dilated(
            h,
            w2,
            window_strides=(1, 2),
            padding="SAME",
            dimension_numbers=("HWCN", "HWIO", "NHWC"),
        )

    size = jax.eval_shape(lambda x: conv2(conv1(x)), jnp.zeros((4, 7, 8))).size
    wd = jax.random.normal(k3, (3, size)) / np.sqrt(size)

    def f(x):
        h = conv2(conv1(x))
        return wd @ jnp.maximum(h, 0.0).reshape(-1)

    return f


def _plain(monkeypatch):
    """Switches to the plain formulation (generic transposes, no chunks)."""
    monkeypatch.setattr(crown_mod, "_FOLD_CONV_ROWS", False)
    monkeypatch.setattr(crown_mod, "_CHUNK_ELEMENTS", 1 << 40)


def _tiny_chunks(monkeypatch):
    """Forces chunked convolutions and chunked full-CROWN identity specs."""
    monkeypatch.setattr(crown_mod, "_FOLD_CONV_ROWS", True)
    monkeypatch.setattr(crown_mod, "_CHUNK_ELEMENTS", 300)


def _close(a, b, tol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * (1 + np.abs(b).max()))


@pytest.mark.parametrize("method", ["crown-ibp", "crown"])
def test_certify_crown_folded_conv_matches_plain_transpose(method, monkeypatch, check_sound):
    f = _lax_net(KEY)
    x = jax.random.uniform(KEY, (4, 7, 8))
    lo, hi = x - 0.05, x + 0.05
    spec = specification_matrix(1, 3)
    bounds = {"crown": crown_bounds, "crown-ibp": crown_ibp_bounds}[method]

    def run():
        out = jax.jit(bounds(f))(lo, hi)
        m = jax.jit(margin_bounds(f, method=method))(lo, hi, spec)
        return out, m

    fast = run()
    _tiny_chunks(monkeypatch)
    chunked = run()
    _plain(monkeypatch)
    plain = run()
    for got in (fast, chunked):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain), strict=True):
            _close(a, b)
    check_sound(f, lo, hi, fast[0][0], fast[0][1], KEY)


def _reference_margins(logits_fn, x, y, eps, beta):
    """Per-example ``vmap`` of the public margin bounds (plain formulation).

    ``beta`` is the CROWN-IBP weight: ``beta * CROWN-IBP + (1 - beta) * IBP``.
    """
    num_classes = jax.eval_shape(logits_fn, x[:1]).shape[-1]
    lo, hi = jnp.clip(x - eps, 0, 1), jnp.clip(x + eps, 0, 1)
    specs = specification_matrix(y, num_classes)

    def one(lo_i, hi_i, s):
        fn = lambda z: logits_fn(z[None])[0]  # noqa: E731
        ibp = margin_bounds(fn, method="ibp")(lo_i, hi_i, s)[0]
        if beta == 0.0:
            return ibp
        cibp = margin_bounds(fn, method="crown-ibp")(lo_i, hi_i, s)[0]
        return beta * cibp + (1 - beta) * ibp

    return jax.vmap(one)(lo, hi, specs)


@pytest.mark.parametrize("beta", [0.0, 0.75])
def test_certify_training_batched_tape_matches_per_example(beta, monkeypatch, check_sound):
    model, variables = _flax_net()
    x = jax.random.uniform(KEY, (6, 9, 9, 4))
    y = jnp.array([0, 1, 2, 3, 4, 0])
    eps = 0.03

    def margins(params):
        logits_fn = lambda z: model.apply({"params": params}, z)  # noqa: E731
        return batched_margin_lower_bounds(logits_fn, x, y, eps, beta=beta)

    def reference(params):
        logits_fn = lambda z: model.apply({"params": params}, z)  # noqa: E731
        return _reference_margins(logits_fn, x, y, eps, beta)

    params = variables["params"]
    weights = jax.random.normal(KEY, (6, 5))  # a generic loss of the margins
    fast = jax.jit(margins)(params)
    fast_grad = jax.jit(jax.grad(lambda p: jnp.sum(weights * margins(p))))(params)
    _tiny_chunks(monkeypatch)
    chunked_grad = jax.jit(jax.grad(lambda p: jnp.sum(weights * margins(p))))(params)
    _plain(monkeypatch)
    ref = jax.jit(reference)(params)
    ref_grad = jax.jit(jax.grad(lambda p: jnp.sum(weights * reference(p))))(params)

    _close(fast, ref)
    np.testing.assert_array_equal(np.asarray(fast)[np.arange(6), np.asarray(y)], 0.0)
    for got in (fast_grad, chunked_grad):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref_grad), strict=True):
            _close(a, b, tol=1e-4)
    # sound: the bounds hold for sampled and attacked points of two examples
    for i in (0, 3):
        spec = specification_matrix(y[i], 5)

        def f(z, spec=spec):
            return spec @ model.apply(variables, z[None])[0]

        lo, hi = jnp.clip(x[i] - eps, 0, 1), jnp.clip(x[i] + eps, 0, 1)
        check_sound(f, lo, hi, fast[i], jnp.full_like(fast[i], jnp.inf), KEY, n=2000)


def test_certify_crown_skips_refining_exact_ibp_boxes(monkeypatch):
    w1 = jax.random.normal(KEY, (8, 5))
    w2 = jax.random.normal(jax.random.fold_in(KEY, 1), (3, 5))

    def f(x):
        h = jnp.maximum(2.0 * (w1 @ x) + 1.0, 0.0)  # first pre-activation: exact in IBP
        return w2 @ jnp.maximum(w1.T @ (h - x.sum()) - 0.5, 0.0)

    x = jax.random.uniform(KEY, (5,))
    lo, hi = x - 0.2, x + 0.2
    boxes, in_def = crown_mod._as_box(lo, hi)
    tape = crown_mod._record(f, boxes, in_def)
    relu_inputs = [
        s.invals[crown_mod._node_positions(s)[0]].id
        for s in tape.steps
        if crown_mod._classify(s) == "relu"
    ]
    assert [crown_mod._ibp_is_exact(tape, i) for i in relu_inputs] == [True, False]
    fast = jax.jit(crown_bounds(f))(lo, hi)
    monkeypatch.setattr(crown_mod, "_ibp_is_exact", lambda tape, node_id: False)
    full = jax.jit(crown_bounds(f))(lo, hi)
    for a, b in zip(fast, full, strict=True):
        _close(a, b)
