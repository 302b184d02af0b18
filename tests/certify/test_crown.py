import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.certify import (
    UnsupportedPrimitiveError,
    certified_accuracy,
    certified_margins,
    crown_bounds,
    crown_ibp_bounds,
    interval_bounds,
    margin_bounds,
    specification_matrix,
)

KEY = jax.random.PRNGKey(1)


def _mlp(key, sizes):
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
                x = jnp.maximum(x, 0.0)
        return x

    return f


class _ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), strides=2, padding=1)(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, (2, 2), (1, 1))
        x = x + nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x))
        x = nn.Dense(10)(x.reshape(-1))
        return nn.Dense(3)(jnp.clip(x, 0.0, 1.0))


def _conv(key):
    m = _ConvNet()
    v = m.init(key, jnp.zeros((6, 6, 2)))
    return lambda x: m.apply(v, x)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_certify_crown_sound_and_tighter_than_ibp(kind, check_sound):
    widths_ibp, widths_crown = [], []
    for seed in range(1):
        key = jax.random.fold_in(KEY, seed)
        if kind == "mlp":
            f, shape, eps = _mlp(key, [6, 20, 20, 3]), (6,), 0.15
        else:
            f, shape, eps = _conv(key), (6, 6, 2), 0.05
        x = jax.random.uniform(key, shape)
        lo, hi = x - eps, x + eps
        ibp = jax.jit(interval_bounds(f))(lo, hi)
        crown = jax.jit(crown_bounds(f))(lo, hi)
        cibp = jax.jit(crown_ibp_bounds(f))(lo, hi)
        for b in (ibp, crown, cibp):
            check_sound(f, lo, hi, b[0], b[1], key, pgd=seed == 0)
        widths_ibp.append(float(jnp.mean(ibp[1] - ibp[0])))
        widths_crown.append(float(jnp.mean(crown[1] - crown[0])))
        # with intersection against IBP, full CROWN is never looser here
        assert np.all(np.asarray(crown[0]) >= np.asarray(ibp[0]) - 1e-5)
    assert np.mean(widths_crown) < np.mean(widths_ibp)


def test_certify_crown_exact_on_affine_net():
    w = jax.random.normal(KEY, (3, 4))

    def f(x):
        return (w @ x).reshape(3, 1).T[0] + 1.0

    lo, hi = -jnp.ones(4), jnp.ones(4)
    c_lo, c_hi = crown_bounds(f)(lo, hi)
    exact = jnp.abs(w).sum(1)
    np.testing.assert_allclose(c_lo, 1.0 - exact, rtol=1e-6)
    np.testing.assert_allclose(c_hi, 1.0 + exact, rtol=1e-6)


def test_certify_crown_spec_and_elision_tighter_than_naive(check_sound):
    f = _mlp(KEY, [5, 16, 16, 4])
    x = jax.random.uniform(KEY, (5,))
    lo, hi = x - 0.1, x + 0.1
    spec = specification_matrix(2, 4)
    i_lo, i_hi = interval_bounds(f)(lo, hi)
    naive_lo = i_lo[2] - i_hi
    for method in ("ibp", "crown", "crown-ibp"):
        m_lo, m_hi = jax.jit(margin_bounds(f, method=method))(lo, hi, spec)
        assert m_lo.shape == (4,)
        check_sound(lambda z: spec @ f(z), lo, hi, m_lo, m_hi, KEY, n=2000, pgd=False)
        assert np.all(np.asarray(m_lo) >= np.asarray(naive_lo) - 1e-5)
    e_lo, _ = margin_bounds(f)(lo, hi, spec)
    j = np.arange(4) != 2
    assert np.mean(np.asarray(e_lo)[j]) > np.mean(np.asarray(naive_lo)[j])


def test_certify_crown_unsupported_max_pool():
    def f(x):
        return nn.max_pool(x, (2, 2), (2, 2)).reshape(-1)

    x = jnp.zeros((4, 4, 1))
    with pytest.raises(UnsupportedPrimitiveError, match="reduce_window_max"):
        crown_bounds(f)(x, x + 1)
    lo, hi = interval_bounds(f)(x, x + 1)  # IBP still works
    assert float(hi.max()) == 1.0


def _logits_fn(key, n_classes=3):
    f = _mlp(key, [4, 16, n_classes])
    return jax.vmap(f)


def test_certify_certified_accuracy_api():
    logits_fn = _logits_fn(KEY)
    x = jax.random.uniform(KEY, (16, 4))
    y = jnp.argmax(logits_fn(x), -1)
    eps = jnp.array([0.0, 0.01, 0.05, 0.5])
    for method in ("ibp", "crown", "crown-ibp"):
        cert = certified_accuracy(logits_fn, x, y, eps, method=method)
        assert cert.shape == (4, 16) and cert.dtype == jnp.bool_
        assert bool(cert[0].all())  # eps 0: correctly classified points certify
        assert not bool(cert[-1].any()) or method != "ibp"
        one = certified_accuracy(logits_fn, x, y, 0.01, method=method)
        np.testing.assert_array_equal(one, cert[1])
    ibp = np.asarray(certified_accuracy(logits_fn, x, y, eps))
    assert np.all(ibp[1:] <= ibp[:-1])  # IBP is monotone in eps
    crown = np.asarray(certified_accuracy(logits_fn, x, y, eps, method="crown"))
    assert crown.sum() >= ibp.sum()
    jitted = jax.jit(lambda x, y: certified_accuracy(logits_fn, x, y, 0.01, method="crown"))
    np.testing.assert_array_equal(jitted(x, y), crown[1])
    wrong = certified_accuracy(logits_fn, x, (y + 1) % 3, 0.0)
    assert not bool(wrong.any())


def test_certify_certified_implies_no_adversarial_example():
    logits_fn = _logits_fn(jax.random.PRNGKey(5))
    x = jax.random.uniform(KEY, (32, 4))
    y = jnp.argmax(logits_fn(x), -1)
    eps = 0.05
    margins = certified_margins(logits_fn, x, y, eps, method="crown")
    cert = np.asarray(jnp.all(margins > 0, -1))
    assert cert.any()
    noise = jax.random.uniform(KEY, (200, *x.shape), minval=-eps, maxval=eps)
    xs = jnp.clip(x[None] + noise, 0, 1)
    preds = jax.vmap(lambda z: jnp.argmax(logits_fn(z), -1))(xs)
    assert np.all(np.asarray(preds == y[None])[:, cert])


def test_certify_certified_accuracy_errors():
    logits_fn = _logits_fn(KEY)
    x, y = jnp.zeros((2, 4)), jnp.zeros((2,), int)
    with pytest.raises(ValueError, match="crown-ibp"):
        certified_accuracy(logits_fn, x, y, 0.1, method="alpha-crown")
    with pytest.raises(ValueError, match="eps must be >= 0"):
        certified_accuracy(logits_fn, x, y, -0.1)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        certified_accuracy(logits_fn, x, y, jnp.array([0.1, -0.2]))
