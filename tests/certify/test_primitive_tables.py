"""Bound rules: keyed by real primitives of the installed JAX, following one classification."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import Primitive

from advjax.certify import (
    CROWN_RULES,
    INTERVAL_RULES,
    UnsupportedPrimitiveError,
    crown_bounds,
    interval_bounds,
)
from advjax.certify import _primitives as P
from advjax.certify._crown import _affine, _identity, _relu_if_one_bounded
from advjax.certify._interval import _decreasing

CLASSES = {
    "IDENTITY": P.IDENTITY,
    "LINEAR": P.LINEAR,
    "LINEAR_GIVEN_CONSTANT": frozenset(P.LINEAR_GIVEN_CONSTANT),
    "BILINEAR": P.BILINEAR,
    "PIECEWISE_LINEAR": P.PIECEWISE_LINEAR,
    "MONOTONE": P.MONOTONE,
    "MONOTONE_GIVEN_CONSTANT": frozenset(P.MONOTONE_GIVEN_CONSTANT),
    "DECREASING": P.DECREASING,
    "COMPARISON": P.COMPARISON,
    "BOOLEAN": P.BOOLEAN,
    "MIXING": P.MIXING,
    "COORDINATEWISE": P.COORDINATEWISE,
    "CALLS": frozenset(P.CALLS),
}
TABLES = {"INTERVAL_RULES": INTERVAL_RULES, "CROWN_RULES": CROWN_RULES, "CALLS": P.CALLS}
CLASSIFIED = frozenset().union(*CLASSES.values())


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_key_is_a_primitive_of_the_installed_jax(name):
    table = TABLES[name]
    assert table
    for key in table:
        assert isinstance(key, Primitive), (name, key)
        # the very object JAX puts in jaxprs: reachable by its public name or by tracing
        assert (
            P.lookup(f"{key.name}_p") is key
            or key in P.CALLS
            or key.name
            in (
                "add_any",
                "scatter-add",
                "remat2",
            )
        ), (name, key.name)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_class_holds_primitives_only(name):
    assert all(isinstance(p, Primitive) for p in CLASSES[name]), name


def test_lookup_of_renamed_primitives():
    assert P.lookup("add_jaxvals_p").name == "add_any"
    assert P.lookup("scatter_add_p") is jax.lax.scatter_add_p
    assert P.lookup("no_such_primitive_p") is None
    # the call primitives are the ones tracing produces
    assert jax.make_jaxpr(jax.jit(jnp.sin))(1.0).jaxpr.eqns[0].primitive in P.CALLS
    assert jax.make_jaxpr(jax.nn.relu)(1.0).jaxpr.eqns[0].primitive in P.CALLS
    assert jax.make_jaxpr(jax.checkpoint(jnp.sin))(1.0).jaxpr.eqns[0].primitive in P.CALLS


def test_interval_table_agrees_with_the_classification():
    keys = frozenset(INTERVAL_RULES)
    assert keys <= CLASSIFIED - frozenset(P.CALLS) | {
        P.ABS,
        P.SQUARE,
        P.INTEGER_POW,
        P.IS_FINITE,
        P.SELECT_N,
    }
    # IBP bounds everything that CROWN treats as affine, identity or ReLU
    assert frozenset(CROWN_RULES) <= keys
    monotone = {p for p, rule in INTERVAL_RULES.items() if getattr(rule, "monotone", False)}
    assert monotone == P.MONOTONE | frozenset(P.MONOTONE_GIVEN_CONSTANT)
    assert {p for p, rule in INTERVAL_RULES.items() if rule is _decreasing} == P.DECREASING
    assert P.COMPARISON | P.BOOLEAN <= keys
    assert not P.MONOTONE & P.DECREASING


def test_crown_table_agrees_with_the_classification():
    assert frozenset(CROWN_RULES) == (
        P.IDENTITY | P.LINEAR | frozenset(P.LINEAR_GIVEN_CONSTANT) | P.BILINEAR | P.PIECEWISE_LINEAR
    )
    for p in P.IDENTITY:
        assert CROWN_RULES[p] is _identity
    for p in P.LINEAR - P.IDENTITY:
        assert CROWN_RULES[p] is _affine
    for p in P.PIECEWISE_LINEAR:
        assert CROWN_RULES[p] is _relu_if_one_bounded
    for p in P.BILINEAR:
        assert CROWN_RULES[p]([0], 2) == "affine" and CROWN_RULES[p]([0, 1], 2) == "other"
    for p, positions in P.LINEAR_GIVEN_CONSTANT.items():
        n = 3
        constant = set(positions(n))
        free = [i for i in range(n) if i not in constant]
        assert CROWN_RULES[p](free[:1], n) == "affine", p
        if constant:
            assert CROWN_RULES[p](sorted(constant)[:1], n) == "other", p
    # the classes used by _ibp_is_exact are affine for CROWN
    assert P.MIXING <= frozenset(CROWN_RULES)
    assert P.COORDINATEWISE <= frozenset(CROWN_RULES)


def test_unsupported_primitives_are_named():
    with pytest.raises(UnsupportedPrimitiveError, match="'sin'"):
        interval_bounds(jnp.sin)(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(UnsupportedPrimitiveError, match="'tanh'"):
        crown_bounds(jnp.tanh)(jnp.zeros(2), jnp.ones(2))


def test_is_finite_and_bool_conversion_are_sound():
    lo, hi = jnp.array([0.0, -jnp.inf, 1.0, jnp.inf]), jnp.array([jnp.inf, 0.0, 2.0, jnp.inf])
    b_lo, b_hi = interval_bounds(jnp.isfinite)(lo, hi)
    np.testing.assert_array_equal(b_lo, [False, False, True, False])
    np.testing.assert_array_equal(b_hi, [True, True, True, False])
    lo, hi = jnp.array([-1.0, 0.0, 0.5, -2.0]), jnp.array([1.0, 0.0, 1.0, -1.0])
    b_lo, b_hi = interval_bounds(lambda x: x.astype(bool))(lo, hi)
    np.testing.assert_array_equal(b_lo, [False, False, True, True])
    np.testing.assert_array_equal(b_hi, [True, False, True, True])
