"""Shared soundness checker for the certify tests."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _corners(lo, hi, key, max_corners=256):
    d = lo.size
    flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
    if d <= 8:
        bits = jnp.array(list(itertools.product([0, 1], repeat=d)), bool)
    else:
        bits = jax.random.bernoulli(key, 0.5, (max_corners, d))
    pts = jnp.where(bits, flat_hi, flat_lo)
    return pts.reshape((-1, *lo.shape))


@functools.lru_cache(maxsize=64)
def _compiled(f, steps=15):
    vf = jax.jit(jax.vmap(f))

    @jax.jit
    def pgd(lo, hi, key):
        """Per output coordinate, sign-gradient ascent and descent projected on the box."""
        n_out = f(lo).size

        def run(k, idx, sign):
            x = jax.random.uniform(k, lo.shape, minval=lo, maxval=hi)

            def obj(z):
                return sign * f(z).reshape(-1)[idx]

            def body(i, carry):
                x, s = carry
                x = jnp.clip(x + s * jnp.sign(jax.grad(obj)(x)), lo, hi)
                return x, s * 0.8

            x, _ = jax.lax.fori_loop(0, steps, body, (x, (hi - lo) / 4))
            return f(x)

        idxs = jnp.tile(jnp.arange(n_out), 2)
        signs = jnp.repeat(jnp.array([1.0, -1.0]), n_out)
        return jax.vmap(run)(jax.random.split(key, 2 * n_out), idxs, signs)

    return vf, pgd


def _check(f, lo, hi, out_lo, out_hi, key, n=10_000, pgd=True, rtol=1e-5):
    vf, pgd_fn = _compiled(f)
    lo, hi = jnp.asarray(lo), jnp.asarray(hi)
    out_lo, out_hi = np.asarray(out_lo), np.asarray(out_hi)
    assert not np.any(np.isnan(out_lo)) and not np.any(np.isnan(out_hi))
    assert np.all(out_lo <= out_hi + rtol * (1 + np.abs(out_hi)))
    k1, k2, k3 = jax.random.split(key, 3)
    pts = jnp.concatenate(
        [_corners(lo, hi, k2), jax.random.uniform(k1, (n, *lo.shape), minval=lo, maxval=hi)]
    )
    ys = [np.asarray(vf(pts))]
    if pgd:
        ys.append(np.asarray(pgd_fn(lo, hi, k3)))
    ys = np.concatenate(ys)
    tol_lo = rtol * (1 + np.abs(out_lo))
    tol_hi = rtol * (1 + np.abs(out_hi))
    below = ys < out_lo[None] - tol_lo[None]
    above = ys > out_hi[None] + tol_hi[None]
    assert not below.any(), f"lower bound violated: min {ys.min(0)} < {out_lo}"
    assert not above.any(), f"upper bound violated: max {ys.max(0)} > {out_hi}"
    return ys


@pytest.fixture(scope="session")
def check_sound():
    """``check_sound(f, lo, hi, out_lo, out_hi, key, n=10_000, pgd=True)``."""
    return _check
