"""Convolutions whose input gradient XLA:CPU runs at full speed inside attack loops.

JAX differentiates a convolution with respect to its input by a transposed
convolution that swaps the kernel's input and output features through its
dimension numbers (kernel labels ``01oi`` for an ``HWIO`` kernel), not by
moving data. Outside a loop XLA rewrites that into its canonical ``01io``
form; inside a ``while`` loop (every attack's step loop) it does not, and
XLA:CPU then runs the convolution in a generic emitter instead of its
optimised (Eigen) kernel: measured here 4-6x slower than the same input
gradient outside a loop. Swapping the kernel's feature axes with an explicit
transpose (hoisted out of the loop, as the kernel is loop-invariant) keeps
the transposed convolution canonical. This module does that, as a drop-in
convolution (for Flax's ``nn.Conv(conv_general_dilated=...)``) and as a
function transform that rewrites every convolution of a traced function.
Max pooling with side-by-side windows (stride = window, the usual 2x2/2) is
rewritten too: JAX differentiates it through ``select_and_scatter_add``,
which XLA:CPU runs about 4x slower than an elementwise first-maximum mask
(:func:`_max_pool_with_masked_grad`; same gradients bit for bit).
Strided convolutions of an input with at most four features (the first
layer of most MNIST nets) run as a matrix product of space-to-depth patches
(:func:`_strided_conv_as_matmul`): XLA:CPU runs them, and their strided
transposed input gradient, in a generic loop; as a product the PGD step of
the fast-adversarial-training MNIST net took 21% less time (one core, batch
250; docs/performance.md).
Their values equal the primitive's up to the order of float sums. Wider
strided convolutions whose kernel is a whole number of strides (4x4 with
stride 2) keep the primitive's values and get their input gradient as a
stride-1 convolution of space-to-depth blocks, not as a convolution of a
zero-interleaved gradient: 13% less time again for the same PGD step.
The convolution rewrite is a ``jax.custom_jvp``, so forward mode (``jax.jvp``,
``jacfwd``, ``linearize``) and reverse mode both work, and interpreters that
inline ``custom_jvp_call`` (``advjax.certify``) see the plain convolution
(the matrix-product form is plain JAX: they bound its slices and product).
``advjax.models.eval_logits_fn`` and ``advjax.train.eval_logits`` apply
:func:`fast_conv_grads` by default on CPU (:func:`default_fast_conv_grads`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

try:
    from jax.extend import core as _core

    _Literal = _core.Literal
except (ImportError, AttributeError):  # pragma: no cover - old JAX fallback
    from jax import core as _core  # type: ignore[no-redef]

    _Literal = _core.Literal

_INLINED_CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr"}
_MARK = "_advjax_fast_conv_grads"


def _freeze(params: dict) -> tuple:
    return tuple(sorted(params.items()))


@functools.cache
def _conv_with_canonical_input_grad(frozen: tuple) -> Callable:
    """A ``custom_jvp`` convolution for one set of ``conv_general_dilated_p`` parameters.

    The tangent with respect to the input is written as the same convolution
    applied to an explicitly transposed kernel (its feature axes swapped in
    memory, labelled ``oi``); JAX's transpose rule swaps the labels back, so the
    input gradient that reverse mode derives from it is canonical. Forward mode
    (``jax.jvp``, ``jacfwd``, ``linearize``) uses the same rule directly.
    A strided convolution whose kernel is a whole number of strides (4x4 with
    stride 2) gets its input tangent as a stride-1 convolution of
    space-to-depth blocks (:func:`_blocked_conv`): the input gradient is then
    a stride-1 convolution too, not a convolution of a zero-interleaved
    (``lhs_dilate``) gradient, three quarters of whose products are by zero.
    """
    params = dict(frozen)
    numbers = params["dimension_numbers"]
    out_axis, in_axis = numbers.rhs_spec[0], numbers.rhs_spec[1]
    swapped_numbers = numbers._replace(rhs_spec=(in_axis, out_axis, *numbers.rhs_spec[2:]))
    swapped = {**params, "dimension_numbers": swapped_numbers}
    perm = list(range(len(numbers.rhs_spec)))
    perm[out_axis], perm[in_axis] = in_axis, out_axis

    def conv(lhs, rhs):
        return lax.conv_general_dilated_p.bind(lhs, rhs, **params)

    @jax.custom_jvp
    def canonical_conv(lhs, rhs):
        return conv(lhs, rhs)

    def tangent_rule(primals, tangents):
        lhs, rhs = primals
        lhs_dot, rhs_dot = tangents
        out = conv(lhs, rhs)
        terms = []
        nonempty = out.size and lhs.size and rhs.size  # leave empty ones to the primitive
        if (
            not isinstance(lhs_dot, SymbolicZero)
            and nonempty
            and _kernel_tiles_strides(params, rhs.shape)
        ):
            terms.append(_blocked_conv(params, lhs_dot, rhs))
        elif not isinstance(lhs_dot, SymbolicZero):
            # The same convolution, kernel O/I swapped in memory: canonical once transposed.
            rhs_swapped = jnp.transpose(rhs, perm)
            terms.append(lax.conv_general_dilated_p.bind(lhs_dot, rhs_swapped, **swapped))
        if not isinstance(rhs_dot, SymbolicZero):
            terms.append(conv(lhs, rhs_dot))
        tangent = functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(out)
        return out, tangent

    canonical_conv.defjvp(tangent_rule, symbolic_zeros=True)
    return canonical_conv


# Strided convolutions with at most this many input features run as a matrix product
# (:func:`_strided_conv_as_matmul`); measured faster on XLA:CPU up to 4, not at 8 or more.
_FEW_INPUT_FEATURES = 4


def _is_few_feature_strided_conv(eqn) -> bool:
    """A strided, undilated, ungrouped float convolution of an input with few features.

    XLA:CPU runs these (the first layer of an MNIST net with stride 2, say) in a
    generic loop, 2-3x slower than the same work as a matrix product; wider
    convolutions go to its optimised kernels and are left alone.
    """
    if eqn.primitive is not lax.conv_general_dilated_p:
        return False
    params = eqn.params
    lhs, rhs = (v.aval for v in eqn.invars)
    in_features = rhs.shape[params["dimension_numbers"].rhs_spec[1]]
    return (
        lhs.size > 0
        and rhs.size > 0
        and eqn.outvars[0].aval.size > 0  # empty ones are left to the primitive
        and _is_plain_strided(params)
        and in_features <= _FEW_INPUT_FEATURES
        and jnp.issubdtype(lhs.dtype, jnp.floating)
        and lhs.dtype == rhs.dtype
    )


def _blocks(size: int, stride: int) -> int:
    return -(-size // stride)


def _is_plain_strided(params: dict) -> bool:
    """A convolution with a stride above 1, no dilation and one feature and batch group."""
    return (
        any(s > 1 for s in params["window_strides"])
        and all(d == 1 for d in (*params["lhs_dilation"], *params["rhs_dilation"]))
        and params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
    )


def _kernel_tiles_strides(params: dict, kernel_shape) -> bool:
    """Whether a plain strided convolution's kernel is a whole number of strides."""
    numbers, strides = params["dimension_numbers"], params["window_strides"]
    kernel = [kernel_shape[axis] for axis in numbers.rhs_spec[2:]]
    return _is_plain_strided(params) and all(
        k % s == 0 for k, s in zip(kernel, strides, strict=True)
    )


def _blocked_operands(params: dict, lhs: jax.Array, rhs: jax.Array):
    """A strided convolution's operands as space-to-depth blocks.

    The padded input is cut into ``stride``-sized blocks whose pixels become
    features; the convolution is then a stride-1 ``VALID`` convolution of the
    blocks ``[N, *blocks, prod(strides) * C]`` with a kernel of
    ``ceil(k / stride)`` blocks ``[*kernel_blocks, prod(strides) * C, O]``
    (zero-padded to a multiple of the stride). Returns both, channels last,
    and the output's spatial sizes.
    """
    numbers = params["dimension_numbers"]
    strides, padding = params["window_strides"], params["padding"]
    x = jnp.transpose(lhs, (numbers.lhs_spec[0], *numbers.lhs_spec[2:], numbers.lhs_spec[1]))
    w = jnp.transpose(rhs, (*numbers.rhs_spec[2:], numbers.rhs_spec[1], numbers.rhs_spec[0]))
    kernel = w.shape[: len(strides)]
    kernel_blocks = [_blocks(k, s) for k, s in zip(kernel, strides, strict=True)]
    out = [
        (x.shape[1 + i] + lo + hi - k) // s + 1
        for i, ((lo, hi), k, s) in enumerate(zip(padding, kernel, strides, strict=True))
    ]
    # Pad (or crop) so that the input holds exactly out + kernel_blocks - 1 blocks per axis.
    x = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        [(0, 0, 0)]
        + [
            (lo, (o + kb - 1) * s - size - lo, 0)
            for (lo, _), o, kb, s, size in zip(
                padding, out, kernel_blocks, strides, x.shape[1:-1], strict=True
            )
        ]
        + [(0, 0, 0)],
    )
    w = jnp.pad(
        w,
        [(0, kb * s - k) for kb, s, k in zip(kernel_blocks, strides, kernel, strict=True)]
        + [(0, 0), (0, 0)],
    )
    return _space_to_depth(x, strides, leading=1), _space_to_depth(w, strides, leading=0), out


def _to_output_layout(y: jax.Array, numbers) -> jax.Array:
    """``[N, *spatial, O]`` -> the convolution's own output layout."""
    order = (numbers.out_spec[0], *numbers.out_spec[2:], numbers.out_spec[1])
    return jnp.transpose(y, tuple(int(i) for i in np.argsort(order)))


def _strided_conv_as_matmul(params: dict, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """A strided convolution as the patches of its space-to-depth blocks times the kernel.

    The stride-1 convolution of :func:`_blocked_operands` is written as the
    concatenation of the blocks' shifted views times the reshaped kernel.
    Same values as the primitive up to the order of the sums; reverse mode
    differentiates it into slices, pads and products that XLA:CPU fuses,
    instead of a strided transposed convolution.
    """
    x, w, out = _blocked_operands(params, lhs, rhs)
    patches = jnp.concatenate(
        [
            x[(slice(None), *(slice(o, o + n) for o, n in zip(offset, out, strict=True)))]
            for offset in itertools.product(*(range(kb) for kb in w.shape[:-2]))
        ],
        axis=-1,
    )
    y = lax.dot_general(
        patches,
        w.reshape(-1, w.shape[-1]),
        (((patches.ndim - 1,), (0,)), ((), ())),
        precision=params["precision"],
        preferred_element_type=params["preferred_element_type"],
    )
    return _to_output_layout(y, params["dimension_numbers"])


def _blocked_conv(params: dict, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """The strided convolution as a stride-1 convolution of space-to-depth blocks.

    Linear in ``lhs``: the input tangent of :func:`_conv_with_canonical_input_grad`.
    Its kernel is bound with its feature axes swapped in memory (labels
    ``...oi``), so that the transpose reverse mode derives from it, the input
    gradient, is the canonical stride-1 convolution.
    """
    x, w, _ = _blocked_operands(params, lhs, rhs)
    spatial = x.ndim - 2
    swapped = jnp.swapaxes(w, -1, -2)  # [*kernel_blocks, O, I]
    numbers = lax.ConvDimensionNumbers(
        lhs_spec=(0, spatial + 1, *range(1, spatial + 1)),
        rhs_spec=(spatial, spatial + 1, *range(spatial)),
        out_spec=(0, spatial + 1, *range(1, spatial + 1)),
    )
    ones = (1,) * spatial
    y = lax.conv_general_dilated_p.bind(
        x,
        swapped,
        **{
            **params,
            "window_strides": ones,
            "padding": ((0, 0),) * spatial,
            "lhs_dilation": ones,
            "rhs_dilation": ones,
            "dimension_numbers": numbers,
        },
    )
    return _to_output_layout(y, params["dimension_numbers"])


def _space_to_depth(z: jax.Array, strides, leading: int) -> jax.Array:
    """``[*lead, *spatial, *rest]`` -> ``[*lead, *(spatial / strides), prod(strides) * rest]``.

    ``leading`` axes come first and are kept (1 for an input's batch axis, 0
    for a kernel); the trailing axes after the spatial ones are folded into
    the last (features for an input, in-features for a kernel, whose out
    features stay the last axis).
    """
    spatial = len(strides)
    lead = z.shape[:leading]
    sizes = z.shape[leading : leading + spatial]
    rest = z.shape[leading + spatial :]
    split = [d for size, s in zip(sizes, strides, strict=True) for d in (size // s, s)]
    z = z.reshape(*lead, *split, *rest)
    blocks = [leading + 2 * i for i in range(spatial)]
    within = [leading + 2 * i + 1 for i in range(spatial)]
    z = jnp.transpose(z, (*range(leading), *blocks, *within, *range(leading + 2 * spatial, z.ndim)))
    if leading:  # an input: pixels within a block and features become features
        return z.reshape(*lead, *(size // s for size, s in zip(sizes, strides, strict=True)), -1)
    # a kernel: pixels within a block and in-features become in-features; out-features last
    return z.reshape(*(size // s for size, s in zip(sizes, strides, strict=True)), -1, rest[-1])


def _pool_tiles(params: dict, shape: tuple) -> bool:
    """Whether a ``reduce_window_max`` has side-by-side windows (stride = window, no dilation).

    A remainder that no window covers (``VALID`` pooling of an odd size) is allowed.
    """
    windows, strides = params["window_dimensions"], params["window_strides"]
    return (
        tuple(windows) == tuple(strides)
        and all(d == 1 for d in (*params["base_dilation"], *params["window_dilation"]))
        and all(
            0 <= lo < w and 0 <= hi < w and size + lo + hi >= w
            for size, w, (lo, hi) in zip(shape, windows, params["padding"], strict=True)
        )
    )


@functools.cache
def _max_pool_with_masked_grad(frozen: tuple) -> Callable:
    """A ``custom_jvp`` max pooling (non-overlapping windows) with an elementwise tangent.

    JAX differentiates ``reduce_window_max`` through ``select_and_scatter_add``
    (reverse) or ``select_and_gather_add`` (forward), which XLA:CPU runs
    slowly: 3.8x the cost of this rule (37.6 against 9.9 ms, one core) for the
    input gradient of a 2x2 pooling of a (128, 28, 28, 32) activation inside
    a loop. Here the
    input is viewed as (tiles, window) axes, each window's first maximum (in
    row-major window order, the element XLA's ``select_and_scatter`` picks)
    is marked by a mask, and the tangent is the masked sum over the window:
    elementwise work that fuses, and whose transpose is a masked broadcast.
    Values and reverse-mode gradients are the primitive's own, bit for bit.
    Forward mode agrees too except at ties, where JAX's own forward rule picks
    another maximum than its reverse rule; here both pick the first.
    """
    params = dict(frozen)
    windows, padding = params["window_dimensions"], params["padding"]

    @jax.custom_jvp
    def tiled_max_pool(x):
        return lax.reduce_window_max_p.bind(x, **params)

    def split(z, pad_value):
        z = lax.pad(z, jnp.asarray(pad_value, z.dtype), [(lo, hi, 0) for lo, hi in padding])
        z = z[tuple(slice(0, size - size % w) for size, w in zip(z.shape, windows, strict=True))]
        shape = []
        for size, w in zip(z.shape, windows, strict=True):
            shape += [size // w, w]
        return z.reshape(shape)

    def tangent_rule(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        out = tiled_max_pool(x)
        window_axes = tuple(range(1, 2 * x.ndim, 2))
        tiles = split(x, -jnp.inf)
        maxima = jnp.expand_dims(out, window_axes)
        # Row-major position of each element inside its window; the first maximum
        # is the one with the smallest position among the window's maxima.
        position = sum(
            lax.broadcasted_iota(jnp.int32, tiles.shape, axis) * stride
            for axis, stride in zip(window_axes, _row_major_strides(windows), strict=True)
        )
        size = functools.reduce(lambda a, b: a * b, windows)
        candidate = jnp.where(tiles == maxima, position, size)
        first = candidate == jnp.min(candidate, axis=window_axes, keepdims=True)
        tangent = jnp.sum(jnp.where(first, split(x_dot, 0), 0), axis=window_axes)
        return out, tangent.astype(out.dtype)

    tiled_max_pool.defjvp(tangent_rule)
    return tiled_max_pool


def _row_major_strides(windows) -> list[int]:
    strides, running = [], 1
    for w in reversed(windows):
        strides.append(running)
        running *= w
    return strides[::-1]


def conv_general_dilated(lhs, rhs, window_strides, padding, *args, **kwargs) -> jax.Array:
    """``lax.conv_general_dilated`` with a CPU-friendly input gradient (same values).

    A drop-in for Flax: ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
    It is a ``jax.custom_jvp``: ``jax.grad``, ``vjp``, ``jvp``, ``vmap`` and
    ``jit`` all work.

    Args:
      lhs: the input, e.g. ``[B, H, W, C]`` with ``dimension_numbers`` NHWC.
      rhs: the kernel, e.g. ``[kh, kw, C, F]`` with ``dimension_numbers`` HWIO.
      window_strides: the strides of the spatial axes, e.g. ``(1, 1)``.
      padding: ``"SAME"``, ``"VALID"`` or explicit ``[(lo, hi), ...]`` per
        spatial axis.
      *args: further positional arguments of ``lax.conv_general_dilated``.
      **kwargs: its keyword arguments (``dimension_numbers``,
        ``feature_group_count``, ``precision``, ...).

    Returns:
      The convolution, as ``lax.conv_general_dilated`` returns it (e.g.
      ``[B, H', W', F]``), with the same values.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import backend
      >>> x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
      >>> dn = ("NHWC", "HWIO", "NHWC")
      >>> f = lambda x: backend.conv_general_dilated(x, w, (1, 1), "SAME",
      ...                                             dimension_numbers=dn).sum()
      >>> g = lambda x: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
      ...                                            dimension_numbers=dn).sum()
      >>> bool(jnp.allclose(jax.jit(jax.grad(f))(x), jax.jit(jax.grad(g))(x)))
      True
    """
    closed = jax.make_jaxpr(
        lambda lhs, rhs: lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, *args, **kwargs
        )
    )(lhs, rhs)
    return _interpret(closed.jaxpr, closed.consts, lhs, rhs)[0]


def _bind(eqn, values):
    """``eqn.primitive.bind`` as ``jax.core.eval_jaxpr`` does it, across JAX versions."""
    bound = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    context = getattr(getattr(eqn, "ctx", None), "manager", None)
    with context if context is not None else contextlib.nullcontext():
        return eqn.primitive.bind(*subfuns, *values, **params)


def _source_of(eqn):
    """Gives the rewritten operation the source location of the one it replaces.

    So error messages (e.g. ``advjax.certify``'s unsupported-primitive errors)
    point at the user's code rather than at this module. Cosmetic: a JAX
    without this private hook gets no context.
    """
    try:
        from jax._src import source_info_util

        return source_info_util.user_context(eqn.source_info.traceback)
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        return contextlib.nullcontext()


def _interpret(jaxpr, consts, *args):
    """Evaluates ``jaxpr``, binding every convolution through the custom-VJP version."""
    env = {}

    def read(var):
        return var.val if isinstance(var, _Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if _is_few_feature_strided_conv(eqn):
            with _source_of(eqn):
                outs = [_strided_conv_as_matmul(eqn.params, *values)]
        elif eqn.primitive is lax.conv_general_dilated_p:
            with _source_of(eqn):
                outs = [_conv_with_canonical_input_grad(_freeze(eqn.params))(*values)]
        elif _is_tiling_max_pool(eqn):
            with _source_of(eqn):
                outs = [_max_pool_with_masked_grad(_freeze(eqn.params))(*values)]
        elif name in _INLINED_CALLS:
            inner = eqn.params[_INLINED_CALLS[name]]
            inner_jaxpr, inner_consts = (
                (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, ())
            )
            outs = _interpret(inner_jaxpr, inner_consts, *values)
        else:
            outs = _bind(eqn, values)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _is_tiling_max_pool(eqn) -> bool:
    if eqn.primitive is not lax.reduce_window_max_p:  # (iota & co. have no operands)
        return False
    aval = eqn.invars[0].aval
    return jnp.issubdtype(aval.dtype, jnp.floating) and _pool_tiles(eqn.params, aval.shape)


def _has_conv(jaxpr) -> bool:
    """Whether :func:`_interpret` would rewrite a convolution or max pooling of ``jaxpr``."""
    for eqn in jaxpr.eqns:
        if eqn.primitive is lax.conv_general_dilated_p or _is_tiling_max_pool(eqn):
            return True
        if eqn.primitive.name in _INLINED_CALLS:
            inner = eqn.params[_INLINED_CALLS[eqn.primitive.name]]
            if _has_conv(getattr(inner, "jaxpr", inner)):
                return True
    return False


def fast_conv_grads(fn: Callable) -> Callable:
    """Rewrites every convolution and max pooling in ``fn`` for fast gradients on CPU.

    Same values and gradients (up to float summation order where said
    below and in the module docstring); the input gradient of each convolution (what
    an attack computes every step) stays in XLA:CPU's fast convolution
    kernel inside the attack's loop (:func:`conv_general_dilated`); a strided
    convolution of an input with at most 4 features runs as a matrix product
    of space-to-depth patches (values equal up to the order of float sums,
    about 1e-7 relative in float32), and max
    pooling with side-by-side windows gets an elementwise gradient instead of
    a scatter (bit-equal in reverse mode; overlapping windows are left
    alone). ``fn`` is traced once per input shape (under ``jax.jit``: once
    per compilation); its closed-over parameters are kept. Convolutions
    inside ``jit``-ed sub-functions are rewritten too; those inside other
    higher-order primitives (``custom_jvp`` rules, ``scan`` bodies) are left
    alone. Where nothing is rewritten (no
    convolution, or the arguments are concrete arrays rather than tracers, so
    nothing differentiates with respect to them) ``fn`` itself is called.
    Wrapping twice is the same as wrapping once.

    Args:
      fn: ``x -> logits`` (any function of arrays returning a pytree of arrays).

    Returns:
      The rewritten function (differentiable in forward and reverse mode).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from advjax import backend
      >>> w = jax.random.normal(jax.random.key(0), (3, 3, 1, 4))
      >>> def logits_fn(x):  # conv 3x3 -> ReLU -> max-pool 2x2/2 -> 2 logits
      ...     y = jax.lax.conv_general_dilated(
      ...         x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      ...     y = nn.max_pool(jax.nn.relu(y), (2, 2), strides=(2, 2))
      ...     return jnp.stack([y.sum((1, 2, 3)), -y.sum((1, 2, 3))], axis=-1)
      >>> fast = backend.fast_conv_grads(logits_fn)
      >>> x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
      >>> fast(x).shape
      (2, 2)
      >>> grad = lambda f: jax.jit(jax.grad(lambda x: f(x)[:, 0].sum()))
      >>> bool(jnp.allclose(grad(fast)(x), grad(logits_fn)(x), atol=1e-6))
      True
      >>> backend.fast_conv_grads(fast) is fast  # wrapping twice = once
      True
    """
    if getattr(fn, _MARK, False):
        return fn

    def rewritten(*args):
        flat_args = jax.tree.leaves(args)
        if not any(isinstance(leaf, jax.core.Tracer) for leaf in flat_args):
            return fn(*args)  # evaluated, not traced: no derivative to speed up
        closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
        if not _has_conv(closed.jaxpr):
            return fn(*args)
        outs = _interpret(closed.jaxpr, closed.consts, *flat_args)
        return jax.tree.unflatten(jax.tree.structure(shapes), outs)

    wrapped = functools.wraps(fn)(rewritten)
    setattr(wrapped, _MARK, True)
    return wrapped


def default_fast_conv_grads(fn: Callable, enabled: bool | None = None) -> Callable:
    """:func:`fast_conv_grads` where it helps: ``enabled=None`` means on the CPU backend.

    The library's own logits functions (``advjax.models.eval_logits_fn``,
    ``advjax.train.eval_logits`` and the run loader) go through this, so
    attacks on CPU get the fast input gradient without asking; pass
    ``fast_conv_grads=False`` to them to opt out.

    Args:
      fn: ``x -> logits`` (any function of arrays returning a pytree of arrays).
      enabled: ``None`` (default): wrap on the CPU backend only; ``True`` /
        ``False``: always / never.

    Returns:
      ``fast_conv_grads(fn)`` when enabled, else ``fn`` itself.

    Example:
      >>> import jax
      >>> from advjax.backend import default_fast_conv_grads
      >>> f = lambda x: 2 * x
      >>> default_fast_conv_grads(f, enabled=False) is f
      True
      >>> default_fast_conv_grads(f, enabled=True) is f
      False
      >>> (default_fast_conv_grads(f) is f) == (jax.default_backend() != "cpu")
      True
    """
    if enabled is None:
        enabled = jax.default_backend() == "cpu"
    return fast_conv_grads(fn) if enabled else fn
