"""Interval bound propagation (IBP) as a JAX function transformation.

``interval_bounds(fn)`` traces ``fn`` to a jaxpr and evaluates it on boxes with one
rule per primitive (the rules table :data:`INTERVAL_RULES`), following the
interval arithmetic of Gowal et al., "On the Effectiveness of Interval Bound
Propagation for Training Verifiably Robust Models" (2018, arXiv:1810.12715) and Mirman et al.,
"Differentiable Abstract Interpretation for Provably Robust Neural Networks"
(ICML 2018). Affine maps use the center/radius form ``W @ mid +- |W| @ rad``.
The table is keyed by primitive objects and built from the classification of
:mod:`advjax.certify._primitives`, shared with CROWN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from advjax._compile import compiled_when_concrete
from advjax.certify import _primitives as P
from advjax.certify._jaxpr_interp import (
    Interval,
    UnsupportedPrimitiveError,
    interpret,
    source_line,
    trace,
)

__all__ = ["INTERVAL_RULES", "interval_bounds", "ibp_eqn"]

Rule = Callable[[Any, list[Any], dict], list[Any]]
Positions = Callable[[int], tuple[int, ...]]


def _is_iv(v) -> bool:
    return isinstance(v, Interval)


def _lo(v):
    return v.lower if _is_iv(v) else v


def _hi(v):
    return v.upper if _is_iv(v) else v


def _bind(eqn, *args, **overrides):
    params = dict(eqn.params, **overrides)
    out = eqn.primitive.bind(*args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _unsupported(eqn, hint: str = "") -> UnsupportedPrimitiveError:
    return UnsupportedPrimitiveError(
        eqn.primitive.name, source_line(eqn), "Interval bound propagation", hint
    )


def _hull(a: Interval, b: Interval) -> Interval:
    return Interval(jnp.minimum(a.lower, b.lower), jnp.maximum(a.upper, b.upper))


# ----------------------------------------------------------------------------- rules


def _monotone(const_positions: Positions | None = None) -> Rule:
    """Rule for primitives non-decreasing in every operand not at ``const_positions(n)``.

    The operands at those positions (indices, predicates) must be constants.
    """

    def rule(eqn, invals, origins):
        del origins
        if const_positions is not None:
            for i in const_positions(len(invals)):
                if _is_iv(invals[i]):
                    raise _unsupported(eqn, f"Operand {i} (an index/predicate) must be a constant.")
        los = _bind(eqn, *[_lo(v) for v in invals])
        his = _bind(eqn, *[_hi(v) for v in invals])
        return [Interval(lo, hi) for lo, hi in zip(los, his, strict=True)]

    rule.monotone = True
    return rule


_MONOTONE_RULE = _monotone()


def _decreasing(eqn, invals, origins):
    """Rule for unary non-increasing primitives (``neg``, ``rsqrt``, ``erfc``)."""
    del origins
    (x,) = invals
    return [Interval(_bind(eqn, x.upper)[0], _bind(eqn, x.lower)[0])]


def _sub(eqn, invals, origins):
    del origins
    a, b = invals
    return [Interval(_lo(a) - _hi(b), _hi(a) - _lo(b))]


def _abs_interval(x: Interval) -> Interval:
    lo = jnp.where(x.lower >= 0, x.lower, jnp.where(x.upper <= 0, -x.upper, 0))
    hi = jnp.maximum(jnp.abs(x.lower), jnp.abs(x.upper))
    return Interval(lo.astype(x.lower.dtype), hi)


def _abs(eqn, invals, origins):
    del eqn, origins
    return [_abs_interval(invals[0])]


def _square_like(x: Interval, power: int) -> Interval:
    if power % 2 == 1:
        return Interval(x.lower**power, x.upper**power)
    a = _abs_interval(x)
    return Interval(a.lower**power, a.upper**power)


def _reciprocal(x: Interval) -> Interval:
    """Bounds of ``1/x``; unbounded when the box contains zero."""
    straddles = (x.lower <= 0) & (x.upper >= 0)
    lo = jnp.where(straddles, -jnp.inf, 1 / x.upper)
    hi = jnp.where(straddles, jnp.inf, 1 / x.lower)
    return Interval(lo, hi)


def _integer_pow(eqn, invals, origins):
    del origins
    (x,) = invals
    y = eqn.params["y"]
    if y == 0:
        return [Interval(jnp.ones_like(x.lower), jnp.ones_like(x.upper))]
    out = _square_like(x, abs(y))
    return [_reciprocal(out) if y < 0 else out]


def _square(eqn, invals, origins):
    del eqn, origins
    return [_square_like(invals[0], 2)]


def _times(a, b):
    """``a * b`` with ``0 * inf = 0``: a zero end of a box times any real is zero."""
    return jnp.where((a == 0) | (b == 0), jnp.zeros_like(a * b), a * b)


def _product(a, b) -> Interval:
    """Exact elementwise product of two boxes (or a box and a constant), infinite ends included."""
    cands = [_times(_lo(a), _lo(b)), _times(_lo(a), _hi(b))]
    cands += [_times(_hi(a), _lo(b)), _times(_hi(a), _hi(b))]
    lo = functools.reduce(jnp.minimum, cands)
    hi = functools.reduce(jnp.maximum, cands)
    return Interval(lo, hi)


def _mul(eqn, invals, origins):
    del eqn, origins
    a, b = invals
    return [_product(a, b)]


def _div(eqn, invals, origins):
    del eqn, origins
    a, b = invals
    if not _is_iv(b):
        # Division by a constant: exact, sign-aware.
        return [_div_const(a, b)]
    return [_product(a, _reciprocal(b))]


def _div_const(a: Interval, c) -> Interval:
    q1, q2 = a.lower / c, a.upper / c
    lo, hi = jnp.minimum(q1, q2), jnp.maximum(q1, q2)
    by_zero = jnp.asarray(c) == 0  # x / 0 is +-inf (or NaN at 0): no finite bound
    return Interval(jnp.where(by_zero, -jnp.inf, lo), jnp.where(by_zero, jnp.inf, hi))


def _bilinear(eqn, invals, origins):
    """``dot_general``/``conv_general_dilated``: center/radius form.

    For ``x = m_x + d_x`` with ``|d_x| <= r_x`` (and likewise ``y``), the bilinear
    map ``B`` satisfies ``|B(x, y) - B(m_x, m_y)| <= B(|m_x|, r_y) + B(r_x, |m_y|) +
    B(r_x, r_y)``; with one constant argument this is the exact ``|W| @ rad``.
    """
    del origins
    a, b = invals
    if _is_iv(a) and not _is_iv(b):
        ma, ra = _center_radius(a)
        mid = _bind(eqn, ma, b)[0]
        rad = _bind(eqn, ra, _floored(jnp.abs(b)))[0]
    elif _is_iv(b) and not _is_iv(a):
        mb, rb = _center_radius(b)
        mid = _bind(eqn, a, mb)[0]
        rad = _bind(eqn, _floored(jnp.abs(a)), rb)[0]
    else:
        (ma, ra), (mb, rb) = _center_radius(a), _center_radius(b)
        mid = _bind(eqn, ma, mb)[0]
        rad = (
            _bind(eqn, _floored(jnp.abs(ma)), rb)[0]
            + _bind(eqn, ra, _floored(jnp.abs(mb)))[0]
            + _bind(eqn, _floored(ra), rb)[0]
        )
    return [Interval(mid - rad, mid + rad)]


def _center_radius(box: Interval):
    """Center and radius with unbounded coordinates as center 0, radius inf (never NaN)."""
    lo, hi = box.lower, box.upper
    bounded = jnp.isfinite(lo) & jnp.isfinite(hi)
    center = jnp.where(bounded, lo / 2 + hi / 2, 0.0).astype(lo.dtype)
    radius = jnp.where(bounded, hi / 2 - lo / 2, jnp.inf).astype(lo.dtype)
    return center, radius


def _floored(magnitude):
    """``|w|`` with zeros raised to the dtype's smallest normal number.

    A zero weight times an infinite radius would give NaN; the floor turns it
    into an infinite (sound) bound and adds at most ``tiny * radius`` elsewhere.
    """
    return jnp.maximum(magnitude, jnp.finfo(magnitude.dtype).tiny)


def _compare(eqn, invals, origins):
    """Comparisons return a boolean box: ``lower`` = surely true, ``upper`` = maybe."""
    del origins
    a, b = invals
    prim = eqn.primitive
    al, ah, bl, bh = _lo(a), _hi(a), _lo(b), _hi(b)
    if prim is P.GE:
        sure, maybe = al >= bh, ah >= bl
    elif prim is P.GT:
        sure, maybe = al > bh, ah > bl
    elif prim is P.LE:
        sure, maybe = ah <= bl, al <= bh
    elif prim is P.LT:
        sure, maybe = ah < bl, al < bh
    elif prim is P.EQ:
        sure = (al == ah) & (bl == bh) & (al == bl)
        maybe = (al <= bh) & (bl <= ah)
    else:  # ne
        eq_sure = (al == ah) & (bl == bh) & (al == bl)
        eq_maybe = (al <= bh) & (bl <= ah)
        sure, maybe = ~eq_maybe, ~eq_sure
    return [Interval(sure, maybe)]


def _is_finite(eqn, invals, origins):
    """``is_finite`` (not monotone): surely finite if both ends are, maybe unless one infinity."""
    del eqn, origins
    (x,) = invals
    sure = jnp.isfinite(x.lower) & jnp.isfinite(x.upper)
    maybe = ~((x.lower == x.upper) & ~jnp.isfinite(x.lower))
    return [Interval(sure, maybe)]


def _convert(eqn, invals, origins):
    """``convert_element_type``: monotone, except a conversion to bool (``x != 0``)."""
    (x,) = invals
    if eqn.params.get("new_dtype") != jnp.bool_ or x.lower.dtype == jnp.bool_:
        return _MONOTONE_RULE(eqn, invals, origins)
    sure = (x.lower > 0) | (x.upper < 0)
    maybe = (x.lower != 0) | (x.upper != 0)
    return [Interval(sure, maybe)]


def _not(eqn, invals, origins):
    del origins
    (x,) = invals
    if x.lower.dtype != jnp.bool_:
        raise _unsupported(eqn, "Bitwise 'not' is only supported on booleans.")
    return [Interval(~x.upper, ~x.lower)]


def _logical(eqn, invals, origins):
    del origins
    if any(_is_iv(v) and _lo(v).dtype != jnp.bool_ for v in invals):
        raise _unsupported(eqn, "Bitwise ops are only supported on booleans.")
    return _MONOTONE_RULE(eqn, invals, {})


def _branch_image(case, region: Interval, x: Interval, origins) -> Interval:
    """Bounds of ``case`` when its source ``x`` is restricted to ``region``."""
    if case is x:
        return region
    origin = origins.get(id(case))
    if origin is not None and origin[0] == "scale" and origin[1] is x:
        scale = origin[2]
        p, q = _times(scale, region.lower), _times(scale, region.upper)
        return Interval(jnp.minimum(p, q), jnp.maximum(p, q))
    if not _is_iv(case):
        return Interval(case, case)
    return case


def _select_n(eqn, invals, origins):
    """``select_n(pred, *cases)``; with an uncertain boolean predicate the hull."""
    pred, *cases = invals
    if not _is_iv(pred):
        return _MONOTONE_RULE(eqn, invals, origins)
    if len(cases) != 2 or pred.lower.dtype != jnp.bool_:
        raise _unsupported(eqn, "Only boolean predicates depending on the input are supported.")
    f_case, t_case = (c if _is_iv(c) else Interval(c, c) for c in cases)
    origin = origins.get(id(pred))
    if origin is not None and origin[0] == "compare":
        # Piecewise refinement (e.g. leaky ReLU): restrict x to each branch's region.
        _, prim, x, c, x_first = origin
        up = prim in (P.GE, P.GT) if x_first else prim in (P.LE, P.LT)
        above = Interval(jnp.maximum(x.lower, c), x.upper)
        below = Interval(x.lower, jnp.minimum(x.upper, c))
        t_reg, f_reg = (above, below) if up else (below, above)
        t_img = _branch_image(cases[1], t_reg, x, origins)
        f_img = _branch_image(cases[0], f_reg, x, origins)
        t_img = Interval(*jnp.broadcast_arrays(t_img.lower, t_img.upper))
        f_img = Interval(*jnp.broadcast_arrays(f_img.lower, f_img.upper))
        t_ok = t_reg.lower <= t_reg.upper
        f_ok = f_reg.lower <= f_reg.upper
        lo = jnp.minimum(
            jnp.where(t_ok, t_img.lower, jnp.inf), jnp.where(f_ok, f_img.lower, jnp.inf)
        )
        hi = jnp.maximum(
            jnp.where(t_ok, t_img.upper, -jnp.inf), jnp.where(f_ok, f_img.upper, -jnp.inf)
        )
        # Intersect with the plain hull for safety (both are sound).
        hull = _hull(t_case, f_case)
        lo = jnp.maximum(jnp.broadcast_to(lo, jnp.shape(hull.lower)), hull.lower)
        hi = jnp.minimum(jnp.broadcast_to(hi, jnp.shape(hull.upper)), hull.upper)
        return [Interval(lo.astype(hull.lower.dtype), hi.astype(hull.upper.dtype))]
    hull = _hull(t_case, f_case)
    lo = jnp.where(pred.lower, t_case.lower, jnp.where(~pred.upper, f_case.lower, hull.lower))
    hi = jnp.where(pred.lower, t_case.upper, jnp.where(~pred.upper, f_case.upper, hull.upper))
    return [Interval(lo, hi)]


INTERVAL_RULES: dict[P.Primitive, Rule] = {
    **{p: _MONOTONE_RULE for p in P.MONOTONE},
    **{p: _monotone(positions) for p, positions in P.MONOTONE_GIVEN_CONSTANT.items()},
    **{p: _decreasing for p in P.DECREASING},
    **{p: _compare for p in P.COMPARISON},
    **{p: _bilinear for p in P.BILINEAR - {P.MUL}},
    P.MUL: _mul,
    P.DIV: _div,
    P.SUB: _sub,
    P.ABS: _abs,
    P.INTEGER_POW: _integer_pow,
    P.SQUARE: _square,
    P.IS_FINITE: _is_finite,
    P.CONVERT_ELEMENT_TYPE: _convert,
    P.NOT: _not,
    **{p: _logical for p in P.BOOLEAN - {P.NOT}},
    P.SELECT_N: _select_n,
}
"""Maps a primitive object (e.g. ``jax.lax.tanh_p``) to ``rule(eqn, invals, origins) -> outvals``.

Built from the classes of :mod:`advjax.certify._primitives`: every monotone
primitive binds on the lower and on the upper ends, decreasing ones swap them,
bilinear maps use the center/radius form; the rest have their own rules.
"""

_ORDER = frozenset((P.GE, P.GT, P.LE, P.LT))


def _record_origin(eqn, invals, outvals, origins) -> None:
    """Remembers how comparison/scaling outputs were formed (for ``select_n``)."""
    prim = eqn.primitive
    if prim in _ORDER and len(invals) == 2:
        a, b = invals
        if _is_iv(a) and not _is_iv(b):
            origins[id(outvals[0])] = ("compare", prim, a, b, True)
        elif _is_iv(b) and not _is_iv(a):
            origins[id(outvals[0])] = ("compare", prim, b, a, False)
    elif prim is P.MUL and len(invals) == 2:
        a, b = invals
        if _is_iv(a) and not _is_iv(b):
            origins[id(outvals[0])] = ("scale", a, b)
        elif _is_iv(b) and not _is_iv(a):
            origins[id(outvals[0])] = ("scale", b, a)
    if prim in _ORDER or prim is P.MUL:
        origins.setdefault("_keepalive", []).append((invals, outvals))


def ibp_eqn(eqn, invals: list[Any], origins: dict) -> list[Any]:
    """Applies the interval rule of ``eqn`` to ``invals`` (Intervals or constants).

    Args:
        eqn: A ``JaxprEqn`` with at least one :class:`Interval` input.
        invals: Input values.
        origins: Scratch dictionary shared across one propagation (used to
            tighten piecewise functions such as leaky ReLU).

    Returns:
        The list of output values (Intervals).

    Raises:
        UnsupportedPrimitiveError: If no rule exists for the primitive (the
            message names it).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> eqn = jax.make_jaxpr(jnp.tanh)(0.0).jaxpr.eqns[0]
        >>> (out,) = ibp_eqn(eqn, [Interval(jnp.array(0.0), jnp.array(1.0))], {})
        >>> round(float(out.lower), 4), round(float(out.upper), 4)
        (0.0, 0.7616)
    """
    rule = INTERVAL_RULES.get(eqn.primitive)
    if rule is None:
        raise _unsupported(eqn)
    outvals = [_without_nan(v) for v in rule(eqn, invals, origins)]
    _record_origin(eqn, invals, outvals, origins)
    return outvals


def _without_nan(box):
    """A NaN lower end becomes -inf and a NaN upper end +inf: wider, never unsound."""
    if not _is_iv(box) or not jnp.issubdtype(jnp.result_type(box.lower), jnp.floating):
        return box
    return Interval(
        jnp.where(jnp.isnan(box.lower), -jnp.inf, box.lower),
        jnp.where(jnp.isnan(box.upper), jnp.inf, box.upper),
    )


def _as_box(lower, upper) -> tuple[list[Interval], Any]:
    lo_leaves, treedef = jax.tree_util.tree_flatten(lower)
    hi_leaves, hi_def = jax.tree_util.tree_flatten(upper)
    if treedef != hi_def:
        raise ValueError(f"lower and upper must have the same structure: {treedef} vs {hi_def}")
    boxes = []
    for lo, hi in zip(lo_leaves, hi_leaves, strict=True):
        lo, hi = jnp.asarray(lo), jnp.asarray(hi)
        if lo.shape != hi.shape:
            raise ValueError(f"lower and upper shapes differ: {lo.shape} vs {hi.shape}")
        boxes.append(Interval(lo, hi.astype(lo.dtype)))
    return boxes, treedef


def interval_bounds(fn: Callable) -> Callable:
    """Transforms ``fn`` into a function computing interval bounds of its output.

    ``interval_bounds(fn)(lower, upper)`` returns ``(out_lower, out_upper)`` such
    that ``out_lower <= fn(x) <= out_upper`` for every ``x`` with
    ``lower <= x <= upper`` (elementwise, up to floating point rounding), computed
    by interval bound propagation (Gowal et al., 2018, arXiv:1810.12715). ``fn`` is traced on the
    shapes of ``lower``; arrays closed over by ``fn`` (e.g. model parameters) are
    treated as constants. The result is differentiable (for IBP training) and can
    be wrapped in ``jax.jit``/``jax.vmap``.

    Args:
        fn: A function of one argument (a pytree of arrays) returning a pytree.

    Returns:
        ``bounds_fn(lower, upper) -> (out_lower, out_upper)``.

    Raises:
        UnsupportedPrimitiveError: (when called) if ``fn`` uses a primitive
            without an interval rule on an input-dependent value.

    Example:
        >>> import jax.numpy as jnp
        >>> w = jnp.array([[1.0, -2.0]])
        >>> f = lambda x: jnp.maximum(w @ x, 0.0)
        >>> lo, hi = interval_bounds(f)(jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0]))
        >>> lo.tolist(), hi.tolist()
        ([0.0], [1.0])
    """

    @functools.wraps(fn)
    def bounds_fn(lower, upper):
        boxes, in_def = _as_box(lower, upper)
        closed, out_tree = trace(lambda *leaves: fn(in_def.unflatten(leaves)), *boxes_lower(boxes))
        origins: dict = {}
        outs = interpret(
            closed.jaxpr,
            closed.consts,
            boxes,
            lambda eqn, invals: ibp_eqn(eqn, invals, origins),
            _is_iv,
        )
        out_lo = [o.lower if _is_iv(o) else o for o in outs]
        out_hi = [o.upper if _is_iv(o) else o for o in outs]
        return out_tree.unflatten(out_lo), out_tree.unflatten(out_hi)

    return compiled_when_concrete(bounds_fn)


def boxes_lower(boxes: list[Interval]) -> list[Any]:
    """Lower corners of a list of boxes (used as tracing examples)."""
    return [b.lower for b in boxes]
