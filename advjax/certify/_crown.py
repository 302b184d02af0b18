"""Linear-relaxation bounds: CROWN, CROWN-IBP and IBP with specification elision.

The network is traced to a jaxpr and recorded as a *tape* of equations whose
inputs depend on the bounded input (constant sub-computations are folded), with
the IBP box of every intermediate value. Bounds on ``C @ fn(x)`` are obtained by a
backward pass that carries linear coefficients ``A`` (one row per specification
row) from the output to the input:

* affine equations (``dot_general``/``conv_general_dilated``/``mul``/``div`` by
  constants, additions, reshapes, pooling sums, padding, ...) are transposed with
  ``jax.vjp`` of the equation itself, vectorised over the rows with ``jax.vmap``
  (so no hand-written backward rule per primitive is needed);
* ``max(x, c)``/``min(x, c)`` with a constant ``c`` (ReLU, clipping) use the CROWN
  linear relaxation with adaptive lower slope (Zhang et al., "Efficient Neural
  Network Robustness Certification with General Activation Functions",
  NeurIPS 2018, arXiv:1811.00866);
* the remaining coefficients are concretised on the input box.

Pre-activation bounds come from CROWN itself (``crown_bounds``) or from IBP
(``crown_ibp_bounds``; Zhang et al., "Towards Stable and Efficient Training of
Verifiably Robust Neural Networks", ICLR 2020, arXiv:1906.06316). ``margin_bounds`` with
``method="ibp"`` folds the specification through the trailing affine layers and
concretises at the last non-linearity with IBP boxes, i.e. the elision of Gowal et
al. (2018, arXiv:1810.12715). Primitives are classified once, in
:mod:`advjax.certify._primitives`; :data:`CROWN_RULES` is keyed by primitive objects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from advjax._compile import compiled_when_concrete
from advjax.certify import _primitives as P
from advjax.certify._interval import _as_box, _times, ibp_eqn
from advjax.certify._jaxpr_interp import (
    Interval,
    UnsupportedPrimitiveError,
    interpret,
    source_line,
    trace,
)

__all__ = ["crown_bounds", "crown_ibp_bounds", "margin_bounds", "linear_bounds"]

Kind = Callable[[list[int], int], str]


def _identity(pos: list[int], n: int) -> str:
    del pos, n
    return "identity"


def _affine(pos: list[int], n: int) -> str:
    del pos, n
    return "affine"


def _affine_given_constant(positions: Callable[[int], tuple[int, ...]]) -> Kind:
    def kind(pos: list[int], n: int) -> str:
        return "other" if set(pos) & set(positions(n)) else "affine"

    return kind


def _affine_if_one_bounded(pos: list[int], n: int) -> str:
    del n
    return "affine" if len(pos) == 1 else "other"


def _relu_if_one_bounded(pos: list[int], n: int) -> str:
    del n
    return "relu" if len(pos) == 1 else "other"


CROWN_RULES: dict[P.Primitive, Kind] = {
    **{p: _affine for p in P.LINEAR},
    **{p: _affine_given_constant(pos) for p, pos in P.LINEAR_GIVEN_CONSTANT.items()},
    **{p: _affine_if_one_bounded for p in P.BILINEAR},
    **{p: _relu_if_one_bounded for p in P.PIECEWISE_LINEAR},
    **{p: _identity for p in P.IDENTITY},
}
"""Maps a primitive object to ``kind(bounded_positions, num_operands)``.

The kind is ``"identity"`` (coefficients pass through), ``"affine"`` (transposed
with ``jax.vjp``), ``"relu"`` (``max``/``min`` with a constant: CROWN's linear
relaxation) or ``"other"`` (concretised with IBP boxes in CROWN-IBP's elision,
an error for CROWN). Primitives not in the table are ``"other"``. Built from the
classes of :mod:`advjax.certify._primitives`.
"""


class _Node:
    """Abstract value while recording: an id and the IBP box of the value."""

    __slots__ = ("id", "box")

    def __init__(self, node_id: int, box: Interval):
        self.id = node_id
        self.box = box


class _Step(NamedTuple):
    eqn: Any
    invals: list  # _Node or constant
    outs: list  # node ids


class _Tape(NamedTuple):
    steps: list
    boxes: dict  # node id -> Interval (mutable: refined by CROWN)
    producer: dict  # node id -> step index
    inputs: list  # input node ids
    outputs: list  # _Node or constant
    batched: bool = False  # boxes carry a leading example axis (see _record_batched)


def _record(fn: Callable, boxes: list[Interval], in_def) -> _Tape:
    """Traces ``fn`` and records the input-dependent equations with IBP boxes."""
    closed, _ = trace(lambda *leaves: fn(in_def.unflatten(leaves)), *[b.lower for b in boxes])
    tape = _Tape([], {}, {}, [], [])
    origins: dict = {}

    def new_node(box) -> _Node:
        node = _Node(len(tape.boxes), box)
        tape.boxes[node.id] = box
        return node

    def handler(eqn, invals):
        ivs = [v.box if isinstance(v, _Node) else v for v in invals]
        outs = [new_node(o) for o in ibp_eqn(eqn, ivs, origins)]
        for o in outs:
            tape.producer[o.id] = len(tape.steps)
        tape.steps.append(_Step(eqn, list(invals), [o.id for o in outs]))
        return outs

    args = [new_node(b) for b in boxes]
    tape.inputs.extend(a.id for a in args)
    outs = interpret(closed.jaxpr, closed.consts, args, handler, lambda v: isinstance(v, _Node))
    tape.outputs.extend(outs)
    return tape


def _record_batched(fn: Callable, lower, upper) -> _Tape:
    """Records the tape of ``fn`` for a batch of boxes (leading example axis).

    ``fn`` acts on one example; the IBP boxes are computed for every example with
    ``jax.vmap`` and stored with a leading example axis, while the steps (shared by
    all examples) are recorded once. :func:`_backward` then runs on all examples at
    once: the rows of every example are transposed together, which, unlike
    ``jax.vmap`` of a per-example backward pass, lets parameter gradients of
    convolutions use a single kernel-gradient convolution (see
    :func:`_conv_lhs_transpose`).

    Args:
        fn: Function of one example (a pytree of arrays).
        lower: Lower corners with a leading example axis.
        upper: Upper corners, same structure.

    Returns:
        A tape with ``batched=True``.
    """
    held: list[_Tape] = []

    def record_one(lo, hi):
        boxes, in_def = _as_box(lo, hi)
        tape = _record(fn, boxes, in_def)
        held.append(tape)
        return [tape.boxes[i] for i in range(len(tape.boxes))]

    boxes = jax.vmap(record_one)(lower, upper)
    (tape,) = held
    # the nodes' boxes are per-example values of the vmap trace: drop them
    for step in tape.steps:
        for v in step.invals:
            if isinstance(v, _Node):
                v.box = None
    for v in tape.outputs:
        if isinstance(v, _Node):
            v.box = None
    return tape._replace(boxes=dict(enumerate(boxes)), batched=True)


def _node_positions(step: _Step) -> list[int]:
    return [i for i, v in enumerate(step.invals) if isinstance(v, _Node)]


def _classify(step: _Step) -> str:
    """Returns 'identity', 'affine', 'relu' or 'other' (see :data:`CROWN_RULES`)."""
    kind = CROWN_RULES.get(step.eqn.primitive)
    return "other" if kind is None else kind(_node_positions(step), len(step.invals))


def _sum_rows(a, b, lead: int = 1):
    """``sum(a * b)`` over all but the ``lead`` leading (example/row) axes, with ``0 * inf = 0``."""
    prod = _times(a, b)
    return prod.reshape((*prod.shape[:lead], -1)).sum(axis=-1)


# Transpose convolutions by folding the rows into the batch dimension, with a
# custom VJP (see _conv_lhs_transpose). Tests switch it off to compare with the
# generic vmapped ``jax.vjp`` transpose.
_FOLD_CONV_ROWS = True

# Coefficient arrays of many rows are processed in chunks of rows holding at
# most this many elements (None: the backend's default, see _chunk_elements).
_CHUNK_ELEMENTS: int | None = None


def _chunk_elements() -> int:
    """Elements per chunk of rows: convolutions and full-CROWN identity specs.

    On CPU 2**18 (1 MiB of float32): XLA:CPU's convolutions slow down about 4x
    per row once their operands outgrow the caches (IBP-small net, 13x13x16
    rows: 5 ms per 100 rows in chunks of 100, 20 ms per 100 rows in one
    convolution of 1000). Elsewhere 2**25, which only bounds memory.
    """
    if _CHUNK_ELEMENTS is not None:
        return _CHUNK_ELEMENTS
    return 1 << 18 if jax.default_backend() == "cpu" else 1 << 25


def _transposed_conv(a, w, params: dict, x_shape: tuple):
    """The transpose of ``x -> conv(x, w)`` applied to ``a``, as one forward convolution.

    Per spatial dimension, with stride ``s``, padding ``(p_lo, p_hi)``, input
    dilation ``d_l``, kernel size ``k`` and kernel dilation ``d_r`` (extent
    ``e = (k - 1) d_r + 1``), the forward convolution reads input ``i`` at padded,
    dilated position ``p_lo + i d_l = j s + t d_r`` for output ``j`` and tap ``t``.
    Its transpose is therefore a convolution of ``a`` dilated by ``s``, with the
    taps reversed, kernel dilation ``d_r``, stride ``d_l`` and low padding
    ``e - 1 - p_lo`` (negative values crop); the high padding makes the result
    as large as the input. Input and output features swap roles per group. The
    kernel is flipped and transposed explicitly into the ``(spatial..., in,
    out)`` layout that XLA:CPU runs with Eigen: the equivalent ``jax.vjp``
    leaves a reversed kernel in ``(spatial..., out, in)`` layout, which inside a
    loop (full CROWN's chunks) runs in a generic, many times slower loop.

    Args:
        a: Coefficients shaped like the convolution output.
        w: The kernel.
        params: The ``conv_general_dilated`` parameters (``batch_group_count == 1``).
        x_shape: Shape of the convolution input.

    Returns:
        An array of shape ``x_shape``.
    """
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    nsp = len(lhs_spec) - 2
    groups = params["feature_group_count"]
    taps = [w.shape[d] for d in rhs_spec[2:]]
    # (spatial..., in per group, out), taps reversed
    wk = jnp.flip(jnp.transpose(w, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])), tuple(range(nsp)))
    in_g, out = wk.shape[-2:]
    # (spatial..., out per group, groups * in per group): group-major output features
    wk = wk.reshape((*taps, in_g, groups, out // groups))
    wk = jnp.transpose(wk, (*range(nsp), nsp + 2, nsp + 1, nsp))
    wk = wk.reshape((*taps, out // groups, groups * in_g))
    padding = []
    for i in range(nsp):
        extent = (taps[i] - 1) * params["rhs_dilation"][i] + 1
        n_in, n_out = x_shape[lhs_spec[2 + i]], a.shape[out_spec[2 + i]]
        low = extent - 1 - params["padding"][i][0]
        dilated = (n_out - 1) * params["window_strides"][i] + 1
        padding.append((low, (n_in - 1) * params["lhs_dilation"][i] + extent - dilated - low))
    dn = jax.lax.ConvDimensionNumbers(out_spec, (nsp + 1, nsp, *range(nsp)), lhs_spec)
    return jax.lax.conv_general_dilated(
        a,
        wk,
        window_strides=params["lhs_dilation"],
        padding=padding,
        lhs_dilation=params["window_strides"],
        rhs_dilation=params["rhs_dilation"],
        dimension_numbers=dn,
        feature_group_count=groups,
        precision=params.get("precision"),
        preferred_element_type=params.get("preferred_element_type"),
    )


def _conv_lhs_transpose(params: dict, x_shape: tuple) -> Callable:
    """``(a, w) -> conv_w^T(a)``: the transpose of ``x -> conv(x, w)``, with a fast VJP.

    The value is computed by :func:`_transposed_conv`. Its derivative is written
    in terms of the *forward* convolution: for ``t(a, w) = conv_w^T a`` and a
    cotangent ``g`` (shaped like the convolution input),
    ``<g, conv_w^T a> = <conv(g, w), a>``, so the cotangent of ``a`` is
    ``conv(g, w)`` and that of ``w`` is the ordinary kernel gradient of
    ``w -> conv(g, w)`` at ``a``. Differentiating the transposed convolution
    itself instead yields kernel-gradient convolutions with reversed windows and
    ``01fb_o01i->f01b`` layouts, which XLA:CPU runs in a generic loop (this made
    a CROWN-IBP training step on the IBP-small net about 20x slower than IBP).

    Args:
        params: The ``conv_general_dilated`` parameters (``batch_group_count == 1``).
        x_shape: Shape of the convolution input.

    Returns:
        A differentiable function ``(a, w) -> array of shape x_shape``.
    """

    def conv(x, w):
        return jax.lax.conv_general_dilated_p.bind(x, w, **params)

    @jax.custom_vjp
    def transpose(a, w):
        return _transposed_conv(a, w, params, x_shape)

    def fwd(a, w):
        return transpose(a, w), (a, w)

    def bwd(res, g):
        a, w = res
        g_a, pullback = jax.vjp(lambda w_: conv(g, w_), w)
        return g_a.astype(a.dtype), pullback(a.astype(g_a.dtype))[0]

    transpose.defvjp(fwd, bwd)
    return transpose


def _folds_conv_rows(step: _Step, pos: list[int]) -> bool:
    """Whether a convolution step is transposed by :func:`_conv_rows_transpose`."""
    if not _FOLD_CONV_ROWS or step.eqn.primitive is not P.CONV or pos != [0]:
        return False
    if step.eqn.params.get("batch_group_count", 1) != 1:
        return False
    return jnp.issubdtype(jnp.result_type(step.invals[1]), jnp.floating)


def _conv_rows_transpose(params: dict, ct, x_shape: tuple, w):
    """Transposes a convolution for ``R`` rows ``ct`` of shape ``(R, *out_shape)``.

    The rows are folded into the batch dimension of the convolution (as
    ``jax.vmap`` would do), so the whole step is one transposed convolution whose
    derivative uses standard convolution layouts (:func:`_conv_lhs_transpose`).
    """
    dn = params["dimension_numbers"]
    lb, ob = dn.lhs_spec[0], dn.out_spec[0]
    w = jnp.asarray(w)
    rows, out_shape = ct.shape[0], ct.shape[1:]
    widest = max(math.prod(out_shape), math.prod(x_shape), 1)
    chunk = max(1, _chunk_elements() // widest)

    def one(c):
        r = c.shape[0]
        folded = jnp.moveaxis(c, 0, ob).reshape(
            (*out_shape[:ob], r * out_shape[ob], *out_shape[ob + 1 :])
        )
        x_folded = (*x_shape[:lb], r * x_shape[lb], *x_shape[lb + 1 :])
        res = _conv_lhs_transpose(params, x_folded)(folded, w)
        res = res.reshape((*x_shape[:lb], r, x_shape[lb], *x_shape[lb + 1 :]))
        return jnp.moveaxis(res, lb, 0)

    if chunk >= rows:
        return one(ct)
    sizes = [min(chunk, rows - i) for i in range(0, rows, chunk)]
    return jnp.concatenate([one(c) for c in jax.lax.split(ct, sizes)])


def _affine_backward(step: _Step, cts: list, out_avals: list, in_avals: dict):
    """Transposes an affine equation for ``R`` rows of coefficients.

    Args:
        step: The affine step.
        cts: Coefficients of shape ``(R, *shape)`` per output (``None``: zero).
        out_avals: Per-example ``(shape, dtype)`` of the outputs.
        in_avals: Per-example ``(shape, dtype)`` of the bounded inputs, by position.

    Returns:
        ``([(input node id, coefficients (R, *shape))], bias (R,))``.
    """
    pos = _node_positions(step)
    eqn = step.eqn
    k = next(c.shape[0] for c in cts if c is not None)
    if _folds_conv_rows(step, pos):  # conv(x, w) has no offset: conv(0, w) = 0
        (ct,) = cts
        in_ct = _conv_rows_transpose(eqn.params, ct, in_avals[0][0], step.invals[1])
        return [(step.invals[0].id, in_ct)], jnp.zeros((k,), ct.dtype)

    def f(*xs):
        merged = list(step.invals)
        for p, x in zip(pos, xs, strict=True):
            merged[p] = x
        out = eqn.primitive.bind(*merged, **eqn.params)
        return tuple(out) if eqn.primitive.multiple_results else out

    zeros = [jnp.zeros(*in_avals[p]) for p in pos]
    offset, pullback = jax.vjp(f, *zeros)
    offsets = list(offset) if eqn.primitive.multiple_results else [offset]
    full = [
        c if c is not None else jnp.zeros((k, *s), o.dtype)
        for c, (s, _), o in zip(cts, out_avals, offsets, strict=True)
    ]
    bias = sum(_sum_rows(c, o[None]) for c, o in zip(full, offsets, strict=True))
    ct_arg = tuple(full) if eqn.primitive.multiple_results else full[0]
    in_cts = jax.vmap(pullback)(ct_arg)
    return [(step.invals[p].id, ct) for p, ct in zip(pos, in_cts, strict=True)], bias


def _relu_relaxation(step: _Step, box: Interval, out_shape: tuple):
    """Linear lower/upper relaxations of ``max(x, c)``/``min(x, c)`` in terms of x.

    ``box`` is the box of ``x``, optionally with leading example axes in front of
    ``out_shape``. Returns ``(x_id, slope_lo, icpt_lo, slope_up, icpt_up)`` with
    ``slope_lo * x + icpt_lo <= y <= slope_up * x + icpt_up`` on the box of ``x``.
    """
    (p,) = _node_positions(step)
    x = step.invals[p]
    c = step.invals[1 - p]
    if box.lower.shape[box.lower.ndim - len(out_shape) :] != out_shape:
        raise UnsupportedPrimitiveError(
            step.eqn.primitive.name,
            source_line(step.eqn),
            "CROWN",
            "The bounded operand of max/min must not be broadcast.",
        )
    lo, up = box.lower, box.upper
    c = jnp.broadcast_to(jnp.asarray(c, lo.dtype), out_shape)
    one, zero = jnp.ones_like(lo), jnp.zeros_like(lo)
    if step.eqn.primitive is P.MAX:
        # y = c + relu(x - c)
        lz, uz = lo - c, up - c
        alpha = (uz >= -lz).astype(lo.dtype)
        s = _chord_slope(lz, uz)
        active, inactive = lz >= 0, uz <= 0
        sl = jnp.where(active, one, jnp.where(inactive, zero, alpha))
        bl = jnp.where(active, zero, jnp.where(inactive, c, c * (1 - alpha)))
        su = jnp.where(active, one, jnp.where(inactive, zero, s))
        # relu(z) <= s (z - lz); unbounded below, the chord is the constant max(uz, 0).
        chord = jnp.where(lz == -jnp.inf, c + uz, c - s * jnp.where(s == 0, zero, lo))
        bu = jnp.where(active, zero, jnp.where(inactive, c, chord))
    else:
        # y = c - relu(c - x)
        lz, uz = c - up, c - lo
        alpha = (uz >= -lz).astype(lo.dtype)
        s = _chord_slope(lz, uz)
        passthrough, clipped = uz <= 0, lz >= 0  # x >= c  /  x <= c
        # relu(z) <= s z - s lz  =>  y >= c - s (c - x) + s lz
        sl = jnp.where(clipped, one, jnp.where(passthrough, zero, s))
        chord = jnp.where(lz == -jnp.inf, c - uz, c - s * c + s * jnp.where(s == 0, zero, lz))
        bl = jnp.where(clipped, zero, jnp.where(passthrough, c, chord))
        # relu(z) >= alpha z  =>  y <= alpha x + c (1 - alpha)
        su = jnp.where(clipped, one, jnp.where(passthrough, zero, alpha))
        bu = jnp.where(clipped, zero, jnp.where(passthrough, c, c * (1 - alpha)))
    return x.id, sl, bl, su, bu


def _chord_slope(lz, uz):
    """``uz / (uz - lz)``, the ReLU chord's slope, with its limits on unbounded boxes.

    ``1`` when ``uz = inf`` (``relu(z) <= z - lz``), ``0`` when only ``lz = -inf``
    (the chord becomes the constant ``max(uz, 0)``, handled by the callers).
    """
    finite = jnp.isfinite(lz) & jnp.isfinite(uz)
    ratio = uz / jnp.where(finite & (uz > lz), uz - lz, 1.0)
    return jnp.where(finite, ratio, jnp.where(uz == jnp.inf, 1.0, 0.0)).astype(lz.dtype)


def _concretize(a, box: Interval):
    """Lower bound of ``a . x`` over ``x`` in ``box`` (infinite ends give ``-inf``, never NaN).

    ``a`` has shape ``(B, K, *shape)`` and the box ``(B, *shape)``; returns ``(B, K)``.
    """
    # min(a * lower, a * upper) per coordinate, with 0 * inf = 0 (see _sum_rows).
    lower, upper = box.lower[:, None], box.upper[:, None]
    return _sum_rows(jnp.maximum(a, 0), lower, 2) + _sum_rows(jnp.minimum(a, 0), upper, 2)


def _backward(tape: _Tape, start: int, a0, mode: str):
    """Lower bound of ``a0 . value(start)`` per row of ``a0``.

    Args:
        tape: The recorded tape.
        start: Node id to bound.
        a0: Coefficients of shape ``(K, *shape(start))``, or ``(B, K, *shape(start))``
            for a batched tape (:func:`_record_batched`; ``B`` examples).
        mode: ``"relax"`` (CROWN: relax ReLUs, error on other non-linearities) or
            ``"concretize"`` (stop at the first non-affine op and use IBP boxes).

    Returns:
        An array of shape ``(K,)`` (``(B, K)`` for a batched tape).
    """
    if tape.batched:
        box_of = tape.boxes.__getitem__
    else:
        a0 = a0[None]

        def box_of(node_id):
            box = tape.boxes[node_id]
            return Interval(box.lower[None], box.upper[None])

    def aval(node_id):
        lower = tape.boxes[node_id].lower
        return lower.shape[int(tape.batched) :], lower.dtype

    b, k = a0.shape[:2]
    coeffs: dict[int, Any] = {start: a0}
    bias = jnp.zeros((b, k), a0.dtype)

    def add(node_id, ct):
        coeffs[node_id] = ct if node_id not in coeffs else coeffs[node_id] + ct

    last = tape.producer.get(start, -1)
    for idx in range(last, -1, -1):
        step = tape.steps[idx]
        if not any(o in coeffs for o in step.outs):
            continue
        cts = [coeffs.pop(o, None) for o in step.outs]
        kind = _classify(step)
        if kind == "identity":
            for v, ct in zip(step.invals, cts, strict=False):
                if ct is not None and isinstance(v, _Node):
                    add(v.id, ct)
        elif kind == "affine":
            # rows of all examples are transposed together: (B, K) -> B * K rows
            rows = [None if c is None else c.reshape((b * k, *c.shape[2:])) for c in cts]
            in_avals = {p: aval(v.id) for p, v in enumerate(step.invals) if isinstance(v, _Node)}
            out_avals = [aval(o) for o in step.outs]
            in_cts, r = _affine_backward(step, rows, out_avals, in_avals)
            bias = bias + r.reshape((b, k))
            for node_id, ct in in_cts:
                add(node_id, ct.reshape((b, k, *ct.shape[1:])))
        elif kind == "relu" and mode == "relax":
            (a,) = cts
            (p,) = _node_positions(step)
            x_id = step.invals[p].id
            out_shape = aval(step.outs[0])[0]
            _, sl, bl, su, bu = _relu_relaxation(step, box_of(x_id), out_shape)
            sl, bl, su, bu = (v[:, None] for v in (sl, bl, su, bu))
            pos, neg = jnp.maximum(a, 0), jnp.minimum(a, 0)
            add(x_id, pos * sl + neg * su)
            bias = bias + _sum_rows(pos, bl, 2) + _sum_rows(neg, bu, 2)
        elif mode == "concretize":
            for o, ct in zip(step.outs, cts, strict=True):
                if ct is not None:
                    bias = bias + _concretize(ct, box_of(o))
        else:
            raise UnsupportedPrimitiveError(
                step.eqn.primitive.name,
                source_line(step.eqn),
                "CROWN",
                "CROWN supports affine operations and max/min with a constant (ReLU); use "
                "interval_bounds (IBP) or margin_bounds(method='ibp') for this model.",
            )
    for node_id, a in coeffs.items():
        bias = bias + _concretize(a, box_of(node_id))
    return bias if tape.batched else bias[0]


def _identity_spec(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    eye = jnp.eye(n, dtype=dtype)
    return jnp.concatenate([eye, -eye]).reshape((2 * n, *shape))


def _refine_rows(tape: _Tape, x_id: int) -> int:
    """Rows per chunk when bounding node ``x_id`` (see :func:`_chunk_elements`)."""
    last = tape.producer.get(x_id, -1)
    widest = tape.boxes[x_id].lower.size
    for step in tape.steps[: last + 1]:
        for v in step.invals:
            if isinstance(v, _Node):
                widest = max(widest, tape.boxes[v.id].lower.size)
    return max(1, _chunk_elements() // widest)


def _ibp_is_exact(tape: _Tape, node_id: int) -> bool:
    """Whether the IBP box of a node is already its exact range over the input box.

    True when the node is computed from one input by coordinate-wise affine steps
    around at most one linear mixing step (e.g. ``conv(x, w) + b`` of the input):
    IBP's center/radius form is then exact (up to rounding), so a CROWN pass
    cannot tighten the box. Broadcasts may only follow the mixing step (copies of
    one coordinate are not independent).
    """
    inputs = set(tape.inputs)
    mixed = False
    while node_id not in inputs:
        step = tape.steps[tape.producer[node_id]]
        pos = _node_positions(step)
        if len(pos) != 1 or len(step.outs) != 1 or _classify(step) not in ("affine", "identity"):
            return False
        prim = step.eqn.primitive
        if prim in P.MIXING:
            if mixed:
                return False
            mixed = True
        elif prim is P.BROADCAST_IN_DIM:
            if mixed:  # copies feeding the mixing step
                return False
        elif prim not in P.COORDINATEWISE:
            return False
        node_id = step.invals[pos[0]].id
    return True


def _refine_preactivations(tape: _Tape) -> None:
    """Full CROWN: tightens the box of every ReLU input by a backward pass.

    The identity specification (``2 n`` rows for ``n`` neurons: lower and upper
    bounds) is processed in chunks of rows with ``lax.map`` so that the
    coefficients of one chunk hold at most :func:`_chunk_elements` elements;
    the rows of a chunk are built from their indices, never as a full identity.
    """
    inputs = set(tape.inputs)
    done: set[int] = set()
    for step in tape.steps:
        if _classify(step) != "relu":
            continue
        (p,) = _node_positions(step)
        x_id = step.invals[p].id
        if x_id in inputs or x_id in done or _ibp_is_exact(tape, x_id):
            continue
        box = tape.boxes[x_id]
        shape, dtype, n = box.lower.shape, box.lower.dtype, box.lower.size
        chunk = _refine_rows(tape, x_id)
        if chunk >= 2 * n:
            r = _backward(tape, x_id, _identity_spec(shape, dtype), "relax")
        else:
            num_chunks = -(-2 * n // chunk)

            def bound_chunk(i, x_id=x_id, shape=shape, dtype=dtype, n=n, chunk=chunk):
                row = i * chunk + jnp.arange(chunk)  # rows >= 2 n are padding
                sign = jnp.where(row < n, 1.0, jnp.where(row < 2 * n, -1.0, 0.0))
                a0 = jax.nn.one_hot(row % n, n, dtype=dtype) * sign.astype(dtype)[:, None]
                return _backward(tape, x_id, a0.reshape((chunk, *shape)), "relax")

            r = jax.lax.map(bound_chunk, jnp.arange(num_chunks)).reshape(-1)[: 2 * n]
        lo = r[:n].reshape(shape)
        hi = -r[n:].reshape(shape)
        tape.boxes[x_id] = Interval(jnp.maximum(lo, box.lower), jnp.minimum(hi, box.upper))
        done.add(x_id)


def _spec_bounds(tape: _Tape, spec, mode: str):
    """Bounds on ``spec @ ravel(output)`` (or on the output when spec is None)."""
    if len(tape.outputs) != 1:
        raise ValueError("Linear-relaxation bounds need a function with a single array output.")
    (out,) = tape.outputs
    if not isinstance(out, _Node):  # output does not depend on the input
        val = jnp.asarray(out)
        if spec is None:
            return val, val
        v = jnp.asarray(spec) @ val.reshape(-1)
        return v, v
    shape = tape.boxes[out.id].lower.shape
    dtype = tape.boxes[out.id].lower.dtype
    if spec is None:
        a0 = _identity_spec(shape, dtype)
    else:
        spec = jnp.asarray(spec, dtype)
        size = tape.boxes[out.id].lower.size
        if spec.ndim != 2 or spec.shape[1] != size:
            raise ValueError(f"spec must have shape (K, {size}); got {spec.shape}")
        spec = spec.reshape((spec.shape[0], *shape))
        a0 = jnp.concatenate([spec, -spec])
    r = _backward(tape, out.id, a0, mode)
    k = a0.shape[0] // 2
    lo, hi = r[:k], -r[k:]
    if spec is None:
        lo, hi = lo.reshape(shape), hi.reshape(shape)
        box = tape.boxes[out.id]
        lo, hi = jnp.maximum(lo, box.lower), jnp.minimum(hi, box.upper)
    return lo, hi


def linear_bounds(fn: Callable, method: str) -> Callable:
    """Builds ``bounds_fn(lower, upper, spec=None)`` for a linear-relaxation method.

    Args:
        fn: Function of one pytree argument with a single array output.
        method: ``"crown"``, ``"crown-ibp"`` or ``"ibp"`` (IBP with elision of the
            specification into the trailing affine layers).

    Returns:
        ``bounds_fn(lower, upper, spec=None) -> (lo, hi)``; with ``spec`` of shape
        ``(K, fn(x).size)`` the bounds are on ``spec @ ravel(fn(x))`` (shape ``(K,)``),
        otherwise on ``fn(x)`` itself.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.array([[1.0, 1.0], [1.0, -1.0]]) @ x
        >>> lo, hi = linear_bounds(f, "crown")(jnp.zeros(2), jnp.ones(2),
        ...                                    spec=jnp.array([[1.0, -1.0]]))
        >>> lo.tolist(), hi.tolist()  # (x0 + x1) - (x0 - x1) = 2 x1
        ([0.0], [2.0])
    """
    modes = {"crown": "relax", "crown-ibp": "relax", "ibp": "concretize"}
    if method not in modes:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(modes)}")

    @functools.wraps(fn)
    def bounds_fn(lower, upper, spec=None):
        boxes, in_def = _as_box(lower, upper)
        tape = _record(fn, boxes, in_def)
        if method == "crown":
            _refine_preactivations(tape)
        return _spec_bounds(tape, spec, modes[method])

    return compiled_when_concrete(bounds_fn)


def crown_bounds(fn: Callable) -> Callable:
    """CROWN bounds (Zhang et al., NeurIPS 2018, arXiv:1811.00866) of ``fn`` over a box.

    Every ReLU pre-activation is bounded by its own CROWN backward pass (full
    CROWN), intersected with IBP; the adaptive lower slope (1 if ``u >= -l`` else 0)
    is used for unstable ReLUs. Supports affine operations (dense, convolution,
    bias, BatchNorm in eval mode, average pooling, reshapes, residual additions,
    concatenation) and ``max``/``min`` with constants (ReLU, clipping).
    Operates on the whole input as one box; use ``jax.vmap`` for batches.

    Args:
        fn: Function of one pytree argument with a single array output.

    Returns:
        ``bounds_fn(lower, upper, spec=None) -> (lo, hi)`` (see
        :func:`linear_bounds`).

    Raises:
        UnsupportedPrimitiveError: (when called) for other non-linearities, e.g.
            max pooling.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.maximum(x, 0.0) - 0.5 * x
        >>> lo, hi = crown_bounds(f)(jnp.array([-1.0]), jnp.array([1.0]))
        >>> lo.tolist(), hi.tolist()  # IBP would give ([-0.5], [1.5])
        ([-0.5], [0.5])
    """
    return linear_bounds(fn, "crown")


def crown_ibp_bounds(fn: Callable) -> Callable:
    """CROWN-IBP bounds (Zhang et al., ICLR 2020, arXiv:1906.06316).

    The pre-activation boxes come from IBP, the output bounds from one CROWN
    backward pass: cheaper than :func:`crown_bounds` (one pass instead of one per
    neuron) and tighter than IBP near the input.

    Args:
        fn: Function of one pytree argument with a single array output.

    Returns:
        ``bounds_fn(lower, upper, spec=None) -> (lo, hi)`` (see
        :func:`linear_bounds`).

    Raises:
        UnsupportedPrimitiveError: (when called) for non-linearities other than
            ``max``/``min`` with a constant.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.maximum(x, 0.0)
        >>> lo, hi = crown_ibp_bounds(f)(jnp.array([-1.0]), jnp.array([3.0]))
        >>> lo.tolist(), hi.tolist()
        ([0.0], [3.0])
    """
    return linear_bounds(fn, "crown-ibp")


def margin_bounds(fn: Callable, *, method: str = "ibp") -> Callable:
    """Bounds on a specification ``C @ fn(x)`` (e.g. logit margins) over a box.

    With ``method="ibp"`` the specification is folded into the trailing affine
    layers before concretising with IBP boxes at the last non-linearity — the
    elision of Gowal et al. (2018, arXiv:1810.12715), never looser than bounding ``fn`` by IBP and
    then multiplying by ``C``. ``"crown"`` and ``"crown-ibp"`` bound ``C @ fn(x)``
    directly with the respective relaxation.

    Args:
        fn: Function of one pytree argument with a single array output.
        method: ``"ibp"``, ``"crown"`` or ``"crown-ibp"``.

    Returns:
        ``bounds_fn(lower, upper, spec) -> (lo, hi)`` with outputs of shape ``(K,)``
        for ``spec`` of shape ``(K, fn(x).size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> w = jnp.array([[1.0, 2.0], [1.0, 1.0]])
        >>> f = lambda x: w @ x
        >>> spec = jnp.array([[1.0, -1.0]])  # logit0 - logit1 = x1
        >>> lo, hi = margin_bounds(f)(jnp.zeros(2), jnp.ones(2), spec)
        >>> lo.tolist(), hi.tolist()
        ([0.0], [1.0])
    """
    inner = linear_bounds(fn, method)

    @functools.wraps(fn)
    def bounds_fn(lower, upper, spec):
        return inner(lower, upper, spec=spec)

    return bounds_fn
