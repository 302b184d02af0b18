"""One classification of the JAX primitives that the bound propagators understand.

IBP (:mod:`advjax.certify._interval`), CROWN (:mod:`advjax.certify._crown`) and the
jaxpr interpreter (:mod:`advjax.certify._jaxpr_interp`) key their tables by the
primitive *objects* of the installed JAX (``jax.lax.add_p``, ...), never by
names, and build those tables from the classes below, so the two bounds agree on
what a primitive is.

Where a primitive comes from: the public ``*_p`` names of
``jax.extend.core.primitives`` (first) or ``jax.lax``. Higher-order primitives
whose public name changed across JAX versions (``jit_p``, once ``pjit_p``) try
every known name and, failing that, are found by tracing a canonical use
(``jax.jit(f)``, ``jax.custom_jvp``, ``jax.custom_vjp``, ``jax.checkpoint``) and
taking the primitive of the jaxpr's only equation. A primitive that the installed
JAX does not have is left out of every class (it cannot appear in a jaxpr).

Classes (a primitive may belong to several):

* :data:`IDENTITY`: ``y = x`` (``stop_gradient``, ``copy``, ...).
* :data:`LINEAR`: linear in all operands together (``add``, ``reshape``,
  ``reduce_sum``, ...): CROWN transposes them, whatever operand is bounded.
* :data:`LINEAR_GIVEN_CONSTANT`: linear in the other operands when the operands at
  the given positions (indices, predicates, divisors) are constants.
* :data:`BILINEAR`: linear in either operand when the other is a constant
  (``mul``, ``dot_general``, ``conv_general_dilated``).
* :data:`PIECEWISE_LINEAR`: ``max``/``min``; with one constant operand a ReLU
  (CROWN's linear relaxation).
* :data:`MONOTONE`: non-decreasing in every operand (IBP binds the primitive on
  the lower and on the upper ends); :data:`MONOTONE_GIVEN_CONSTANT` likewise for
  the non-index operands when the indices are constants.
* :data:`DECREASING`: unary and non-increasing (IBP swaps the ends).
* :data:`COORDINATEWISE` and :data:`MIXING`: whether an output coordinate reads
  one input coordinate or sums several (CROWN skips refining boxes that IBP
  computes exactly).
* :data:`COMPARISON`, :data:`BOOLEAN`: comparisons and boolean logic (IBP on
  boolean boxes).
* :data:`CALLS`: nested calls that the interpreter inlines, with the parameters
  that may hold their body.

Example:
    >>> import jax
    >>> jax.lax.add_p in LINEAR, jax.lax.max_p in PIECEWISE_LINEAR
    (True, True)
    >>> jax.lax.tanh_p in MONOTONE, jax.lax.neg_p in DECREASING
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

try:  # JAX >= 0.4.3x
    from jax.extend.core import Primitive
    from jax.extend.core import primitives as _public_primitives
except (ImportError, AttributeError):  # pragma: no cover - old JAX fallback
    from jax.core import Primitive  # type: ignore[no-redef,attr-defined]

    _public_primitives = None

__all__ = [
    "BILINEAR",
    "BOOLEAN",
    "CALLS",
    "COMPARISON",
    "COORDINATEWISE",
    "DECREASING",
    "IDENTITY",
    "LINEAR",
    "LINEAR_GIVEN_CONSTANT",
    "MIXING",
    "MONOTONE",
    "MONOTONE_GIVEN_CONSTANT",
    "PIECEWISE_LINEAR",
    "Primitive",
    "lookup",
]

_SOURCES = tuple(m for m in (_public_primitives, jax.lax) if m is not None)


def lookup(*attrs: str) -> Primitive | None:
    """The first public primitive object named ``attrs[i]`` in the installed JAX.

    Args:
        *attrs: Attribute names to try, e.g. ``"jit_p", "pjit_p"``; each is looked
            up in ``jax.extend.core.primitives``, then in ``jax.lax``.

    Returns:
        A :class:`jax.extend.core.Primitive`, or ``None`` if no name exists.

    Example:
        >>> import jax
        >>> lookup("add_p") is jax.lax.add_p, lookup("no_such_p")
        (True, None)
    """
    for module in _SOURCES:
        for attr in attrs:
            prim = getattr(module, attr, None)
            if isinstance(prim, Primitive):
                return prim
    return None


def _traced(make: Callable[[], Callable], *args) -> Primitive | None:
    """The primitive of the only equation of ``jax.make_jaxpr(make())(*args)``."""
    try:
        eqns = jax.make_jaxpr(make())(*args).jaxpr.eqns
    except Exception:  # noqa: BLE001 - an absent feature leaves the primitive out
        return None
    return eqns[0].primitive if len(eqns) == 1 else None


def _custom_jvp_fn():
    @jax.custom_jvp
    def f(x):
        return x

    f.defjvp(lambda primals, tangents: (primals[0], tangents[0]))
    return f


def _custom_vjp_fn():
    @jax.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda _, g: (g,))
    return f


def _prims(*attrs: str) -> frozenset[Primitive]:
    """The primitives ``jax.lax.<attr>`` that exist in the installed JAX."""
    found = (lookup(a) for a in attrs)
    return frozenset(p for p in found if p is not None)


_x = jax.ShapeDtypeStruct((), jnp.float32)  # abstract: importing must not start a backend

JIT = lookup("jit_p", "pjit_p") or _traced(lambda: jax.jit(lambda x: x + 1), _x)
CUSTOM_JVP_CALL = lookup("custom_jvp_call_p") or _traced(_custom_jvp_fn, _x)
CUSTOM_VJP_CALL = lookup("custom_vjp_call_p") or _traced(_custom_vjp_fn, _x)
REMAT = lookup("remat_p", "checkpoint_p") or _traced(lambda: jax.checkpoint(jnp.sin), _x)
CLOSED_CALL = lookup("closed_call_p")
CALL = lookup("call_p")

CALLS: dict[Primitive, tuple[str, ...]] = {
    p: params
    for p, params in (
        (JIT, ("jaxpr",)),
        (CLOSED_CALL, ("call_jaxpr",)),
        (CALL, ("call_jaxpr",)),
        (CUSTOM_JVP_CALL, ("call_jaxpr", "fun_jaxpr")),
        (CUSTOM_VJP_CALL, ("call_jaxpr", "fun_jaxpr")),
        (REMAT, ("jaxpr",)),
    )
    if p is not None
}
"""Nested calls inlined by the interpreter -> parameters that may hold the body."""

IDENTITY = _prims("stop_gradient_p", "copy_p", "optimization_barrier_p", "sharding_constraint_p")
"""``y = x`` (operand by operand)."""

LINEAR = _prims(
    "add_p",
    "add_jaxvals_p",  # "add_any", from autodiff
    "sub_p",
    "neg_p",
    "convert_element_type_p",
    "reshape_p",
    "transpose_p",
    "broadcast_in_dim_p",
    "concatenate_p",
    "slice_p",
    "squeeze_p",
    "rev_p",
    "pad_p",
    "split_p",
    "stack_p",
    "reduce_sum_p",
    "reduce_window_sum_p",
    "cumsum_p",
)
"""Linear in all operands together."""


def _from(first: int) -> Callable[[int], tuple[int, ...]]:
    return lambda n: tuple(range(first, n))


def _at(*positions: int) -> Callable[[int], tuple[int, ...]]:
    return lambda n: tuple(p for p in positions if p < n)


_INDEXED = {
    "dynamic_slice_p": _from(1),
    "dynamic_update_slice_p": _from(2),
    "gather_p": _at(1),
    "scatter_add_p": _at(1),
}

MONOTONE_GIVEN_CONSTANT: dict[Primitive, Callable[[int], tuple[int, ...]]] = {
    lookup(a): positions for a, positions in _INDEXED.items() if lookup(a) is not None
}
"""Selections and scatter-adds: non-decreasing in the data when the indices are constant.

Maps the primitive to ``num_operands -> positions that must be constant``.
"""

LINEAR_GIVEN_CONSTANT: dict[Primitive, Callable[[int], tuple[int, ...]]] = {
    **MONOTONE_GIVEN_CONSTANT,
    **{
        p: positions
        for p, positions in ((lookup("select_n_p"), _at(0)), (lookup("div_p"), _at(1)))
        if p is not None
    },
}
"""Linear in the other operands when the given positions are constants.

Maps the primitive to ``num_operands -> positions that must be constant``
(indices, the ``select_n`` predicate, the divisor).
"""

BILINEAR = _prims("mul_p", "dot_general_p", "conv_general_dilated_p")
"""Linear in either operand when the other is a constant."""

PIECEWISE_LINEAR = _prims("max_p", "min_p")
"""``max``/``min``: with one constant operand a (shifted) ReLU."""

MONOTONE = (
    _prims(
        # elementwise, non-decreasing
        "tanh_p",
        "logistic_p",
        "exp_p",
        "exp2_p",
        "expm1_p",
        "log_p",
        "log1p_p",
        "sqrt_p",
        "cbrt_p",
        "erf_p",
        "erf_inv_p",
        "atan_p",
        "asinh_p",
        "sinh_p",
        "atanh_p",
        "sign_p",
        "floor_p",
        "ceil_p",
        "round_p",
        "reduce_precision_p",
        "add_p",
        "add_jaxvals_p",
        "max_p",
        "min_p",
        "clamp_p",
        # order-preserving structure: rearrangements, copies, sums and extrema
        "reshape_p",
        "transpose_p",
        "broadcast_in_dim_p",
        "concatenate_p",
        "slice_p",
        "squeeze_p",
        "rev_p",
        "pad_p",
        "split_p",
        "stack_p",
        "reduce_sum_p",
        "reduce_max_p",
        "reduce_min_p",
        "reduce_window_sum_p",
        "reduce_window_max_p",
        "reduce_window_min_p",
        "cumsum_p",
        "cummax_p",
        "cummin_p",
        "cumlogsumexp_p",
    )
    | IDENTITY
)
"""Non-decreasing in every operand (elementwise, on the operands' order)."""

DECREASING = _prims("neg_p", "rsqrt_p", "erfc_p")
"""Unary and non-increasing."""

COMPARISON = _prims("ge_p", "gt_p", "le_p", "lt_p", "eq_p", "ne_p")
"""Comparisons (boolean outputs)."""

BOOLEAN = _prims("not_p", "and_p", "or_p")
"""Boolean logic (on boolean operands)."""

MIXING = _prims("dot_general_p", "conv_general_dilated_p", "reduce_sum_p", "reduce_window_sum_p")
"""Linear maps that sum several input coordinates into one output coordinate."""

COORDINATEWISE = (
    _prims(
        "add_p",
        "sub_p",
        "mul_p",
        "div_p",
        "neg_p",
        "convert_element_type_p",
        "reshape_p",
        "transpose_p",
        "squeeze_p",
        "slice_p",
        "pad_p",
        "rev_p",
    )
    | IDENTITY
)
"""Each output coordinate is a function of one coordinate of the bounded operand."""

# Single primitives that the rules dispatch on.
ADD = lookup("add_p")
SUB = lookup("sub_p")
MUL = lookup("mul_p")
DIV = lookup("div_p")
ABS = lookup("abs_p")
SQUARE = lookup("square_p")
INTEGER_POW = lookup("integer_pow_p")
MAX = lookup("max_p")
MIN = lookup("min_p")
GE, GT, LE, LT, EQ, NE = (lookup(f"{n}_p") for n in ("ge", "gt", "le", "lt", "eq", "ne"))
NOT = lookup("not_p")
SELECT_N = lookup("select_n_p")
IS_FINITE = lookup("is_finite_p")
CONVERT_ELEMENT_TYPE = lookup("convert_element_type_p")
DOT_GENERAL = lookup("dot_general_p")
CONV = lookup("conv_general_dilated_p")
BROADCAST_IN_DIM = lookup("broadcast_in_dim_p")
