import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from advjax.certify import UnsupportedPrimitiveError, interval_bounds

KEY = jax.random.PRNGKey(0)


def _dense(key, sizes, act=jax.nn.relu):
    keys = jax.random.split(key, len(sizes))
    ws = [
        jax.random.normal(k, (b, a)) / np.sqrt(a)
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=False)
    ]
    bs = [0.1 * jax.random.normal(k, (b,)) for k, b in zip(keys, sizes[1:], strict=False)]

    def f(x):
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            x = w @ x + b
            if i < len(ws) - 1:
                x = act(x)
        return x

    return f


def _conv_net(key):
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, (4, 2, 3, 3)) * 0.4  # OIHW, 2 groups of 2 -> 4
    w2 = jax.random.normal(k2, (3, 4, 2, 2)) * 0.4
    w3 = jax.random.normal(k3, (5, 3 * 3 * 3)) * 0.2

    def f(x):  # x: (4, 7, 7) CHW
        h = lax.conv_general_dilated(
            x[None],
            w1,
            window_strides=(2, 1),
            padding=((1, 2), (0, 1)),
            rhs_dilation=(2, 1),
            feature_group_count=2,
        )
        h = jax.nn.relu(h)
        h = lax.conv_general_dilated(
            h, w2, window_strides=(2, 2), padding=((1, 1), (0, 1)), lhs_dilation=(2, 1)
        )
        h = jnp.tanh(h)
        return w3 @ h.reshape(-1)

    return f


class _FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(6, (3, 3), strides=1, padding="SAME")(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        r = nn.Conv(6, (3, 3), padding="SAME")(x)
        x = x + nn.leaky_relu(r, 0.1)  # residual
        x = nn.avg_pool(x, (2, 2), (2, 2), padding="SAME")
        x = jnp.concatenate([x, jax.nn.sigmoid(x)], axis=-1)
        x = jnp.mean(x, axis=(0, 1))
        x = nn.Dense(8)(x)
        x = jax.nn.gelu(x) + jax.nn.softplus(x) + jax.nn.elu(x)
        return jax.nn.log_softmax(nn.Dense(4)(x))


def _flax_net(key):
    m = _FlaxNet()
    v = m.init(key, jnp.zeros((8, 8, 3)))
    # non-trivial BatchNorm statistics
    stats = jax.tree_util.tree_map(
        lambda a: a + jax.random.uniform(key, a.shape, minval=0.1, maxval=0.5), v["batch_stats"]
    )
    v = {"params": v["params"], "batch_stats": stats}
    return lambda x: m.apply(v, x)


def _misc_net(key):
    w = jax.random.normal(key, (3, 6))

    def f(x):
        h = w @ x
        p = h * jnp.flip(h)  # interval x interval product
        q = h / (2.0 + jnp.abs(h))  # division by a positive interval
        s = jnp.sum(jnp.abs(x) ** 3) - jnp.square(x[0]) + jnp.sqrt(1 + x[1] ** 2)
        r = jnp.clip(h, -0.3, 0.5) + jnp.exp(-h) + jnp.maximum(h, p) + jnp.minimum(q, 0.1)
        y = jnp.concatenate([p, q, r, s[None], jnp.pad(h, 1)[::2], lax.rsqrt(2 + h**2)])
        return y @ jnp.ones((y.shape[0], 2)) + jax.nn.softmax(y[:3])[0]

    return f


NETS = {
    "dense": (lambda: _dense(KEY, [5, 16, 16, 3]), (5,)),
    "dense_tanh": (lambda: _dense(KEY, [4, 10, 10, 2], jnp.tanh), (4,)),
    "dense_sigmoid": (lambda: _dense(KEY, [4, 10, 3], jax.nn.sigmoid), (4,)),
    "conv": (lambda: _conv_net(KEY), (4, 7, 7)),
    "flax_bn_pool_residual": (lambda: _flax_net(KEY), (8, 8, 3)),
    "misc": (lambda: _misc_net(KEY), (6,)),
}


# BatchNorm, pooling and residual additions stay covered in the default run by
# test_certify_crown_sound_and_tighter_than_ibp[conv] (IBP, CROWN and CROWN-IBP).
_SLOW_NETS = {"flax_bn_pool_residual"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_NETS else n for n in sorted(NETS)],
)
def test_certify_interval_sound(name, check_sound):
    make, shape = NETS[name]
    f = make()
    bounds = jax.jit(interval_bounds(f))
    for i, eps in enumerate([0.15]):
        k = jax.random.fold_in(KEY, i)
        x = jax.random.uniform(k, shape, minval=-1, maxval=1)
        lo, hi = bounds(x - eps, x + eps)
        assert lo.shape == hi.shape == jnp.shape(f(x))
        check_sound(f, x - eps, x + eps, lo, hi, k)


@pytest.mark.slow  # dense rules stay covered by test_certify_interval_sound[dense]
@settings(max_examples=5, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    eps=st.floats(0.0, 1.0),
    width=st.integers(1, 12),
)
def test_certify_interval_sound_random_mlps(seed, eps, width, check_sound):
    key = jax.random.PRNGKey(seed)
    f = _dense(key, [3, width, width, 2])
    x = jax.random.normal(key, (3,))
    lo, hi = interval_bounds(f)(x - eps, x + eps)
    check_sound(f, x - eps, x + eps, lo, hi, key, n=2_000, pgd=False)


def test_certify_interval_hand_computed_221():
    w1 = jnp.array([[1.0, -1.0], [2.0, 1.0]])
    b1 = jnp.array([0.0, -1.0])
    w2 = jnp.array([[1.0, -2.0]])
    b2 = jnp.array([0.5])

    def f(x):
        return w2 @ jax.nn.relu(w1 @ x + b1) + b2

    lo, hi = interval_bounds(f)(jnp.zeros(2), jnp.ones(2))
    # pre-activations [-1, 1] and [-1, 2] -> relu [0, 1], [0, 2] -> [0 - 4 + .5, 1 + .5]
    np.testing.assert_array_equal(lo, [-3.5])
    np.testing.assert_array_equal(hi, [1.5])


def test_certify_interval_point_box_is_exact():
    f = NETS["flax_bn_pool_residual"][0]()
    x = jax.random.uniform(KEY, (8, 8, 3))
    lo, hi = jax.jit(interval_bounds(f))(x, x)
    np.testing.assert_allclose(lo, f(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hi, f(x), rtol=1e-5, atol=1e-5)


def test_certify_interval_leaky_relu_is_tight():
    lo, hi = interval_bounds(lambda x: nn.leaky_relu(x, 0.1))(jnp.array([-1.0]), jnp.array([2.0]))
    np.testing.assert_allclose(lo, [-0.1])
    np.testing.assert_allclose(hi, [2.0])


def test_certify_interval_pytree_io():
    def f(d):
        return {"s": d["a"] + d["b"], "m": jnp.maximum(d["a"], 0.0)}

    lo = {"a": jnp.array([-1.0]), "b": jnp.array([1.0])}
    hi = {"a": jnp.array([2.0]), "b": jnp.array([3.0])}
    out_lo, out_hi = interval_bounds(f)(lo, hi)
    assert out_lo["s"].tolist() == [0.0] and out_hi["s"].tolist() == [5.0]
    assert out_lo["m"].tolist() == [0.0] and out_hi["m"].tolist() == [2.0]


@pytest.mark.parametrize(
    "fn, prim",
    [(lambda x: jnp.sort(x), "sort"), (lambda x: jnp.sin(x), "sin"), (lax.cumprod, "cumprod")],
)
def test_certify_interval_unsupported_names_primitive(fn, prim):
    with pytest.raises(UnsupportedPrimitiveError) as err:
        interval_bounds(lambda x: 2 * fn(x))(jnp.zeros(3), jnp.ones(3))
    msg = str(err.value)
    assert f"'{prim}'" in msg and "test_interval.py" in msg
    assert err.value.primitive == prim


def test_certify_interval_constants_fold():
    # input-independent branches (e.g. sin of a closed-over constant) are fine
    c = jnp.arange(3.0)
    lo, hi = interval_bounds(lambda x: x + jnp.sin(c) + jnp.sort(c))(jnp.zeros(3), jnp.ones(3))
    np.testing.assert_allclose(hi - lo, 1.0)


@pytest.mark.slow  # covered in the default run by tests/train/test_certified_training.py
def test_certify_interval_jit_equals_eager():
    f = NETS["flax_bn_pool_residual"][0]()
    x = jax.random.uniform(KEY, (8, 8, 3))
    eager = interval_bounds(f)(x - 0.05, x + 0.05)
    jitted = jax.jit(interval_bounds(f))(x - 0.05, x + 0.05)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # covered in the default run by tests/train/test_certified_training.py
def test_certify_interval_grad_finite_for_ibp_training():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(3)])
    params = model.init(KEY, jnp.zeros(4))
    x = jax.random.uniform(KEY, (4,))

    def loss(params, eps):
        lo, hi = interval_bounds(lambda z: model.apply(params, z))(x - eps, x + eps)
        return jnp.sum(hi - lo) + jnp.sum(lo**2)

    g_params, g_eps = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, 0.1)
    leaves = jax.tree_util.tree_leaves(g_params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert any(float(jnp.abs(leaf).sum()) > 0 for leaf in leaves)
    assert np.isfinite(g_eps) and g_eps > 0


def test_certify_interval_vmap():
    f = _dense(KEY, [5, 8, 2])
    x = jax.random.uniform(KEY, (6, 5))
    lo, hi = jax.vmap(interval_bounds(f))(x - 0.1, x + 0.1)
    lo1, hi1 = interval_bounds(f)(x[2] - 0.1, x[2] + 0.1)
    np.testing.assert_allclose(lo[2], lo1, rtol=1e-6)
    np.testing.assert_allclose(hi[2], hi1, rtol=1e-6)
