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
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

try:
    from jax.extend import core as _core

    _Literal = _core.Literal
except (ImportError, AttributeError):  # pragma: no cover - old JAX fallback
    from jax import core as _core  # type: ignore[no-redef]

    _Literal = _core.Literal

_INLINED_CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr"}


def _freeze(params: dict) -> tuple:
    return tuple(sorted(params.items()))


@functools.cache
def _conv_with_canonical_input_grad(frozen: tuple) -> Callable:
    """A ``custom_vjp`` convolution for one set of ``conv_general_dilated_p`` parameters."""
    params = dict(frozen)
    numbers = params["dimension_numbers"]
    out_axis, in_axis = numbers.rhs_spec[0], numbers.rhs_spec[1]
    swapped_numbers = numbers._replace(rhs_spec=(in_axis, out_axis, *numbers.rhs_spec[2:]))
    swapped = {**params, "dimension_numbers": swapped_numbers}

    def conv(lhs, rhs):
        return lax.conv_general_dilated_p.bind(lhs, rhs, **params)

    def swapped_conv(lhs, rhs_swapped):  # the same convolution, kernel O/I swapped in memory
        return lax.conv_general_dilated_p.bind(lhs, rhs_swapped, **swapped)

    @jax.custom_vjp
    def canonical(lhs, rhs):
        return conv(lhs, rhs)

    def forward(lhs, rhs):
        return conv(lhs, rhs), (lhs, rhs)

    def backward(residuals, cotangent):
        lhs, rhs = residuals
        perm = list(range(rhs.ndim))
        perm[out_axis], perm[in_axis] = in_axis, out_axis
        rhs_swapped = jnp.transpose(rhs, perm)
        # JAX's transpose rule swaps the kernel labels back: canonical for rhs_swapped.
        lhs_grad = jax.vjp(lambda x: swapped_conv(x, rhs_swapped), lhs)[1](cotangent)[0]
        rhs_grad = jax.vjp(lambda r: conv(lhs, r), rhs)[1](cotangent)[0]
        return lhs_grad, rhs_grad

    canonical.defvjp(forward, backward)
    return canonical


def conv_general_dilated(lhs, rhs, window_strides, padding, *args, **kwargs) -> jax.Array:
    """``lax.conv_general_dilated`` with a CPU-friendly input gradient (same values).

    A drop-in for Flax: ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
    Reverse-mode only (it is a ``jax.custom_vjp``): ``jax.grad``, ``vjp``,
    ``vmap`` and ``jit`` work, forward-mode ``jax.jvp`` does not.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import parallel
      >>> x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
      >>> dn = ("NHWC", "HWIO", "NHWC")
      >>> f = lambda x: parallel.conv_general_dilated(x, w, (1, 1), "SAME",
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
        if eqn.primitive is lax.conv_general_dilated_p:
            outs = [_conv_with_canonical_input_grad(_freeze(eqn.params))(*values)]
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


def fast_conv_grads(fn: Callable) -> Callable:
    """Rewrites every convolution in ``fn`` to use :func:`conv_general_dilated`.

    Same values and gradients; the input gradient of each convolution (what
    an attack computes every step) stays in XLA:CPU's fast convolution
    kernel inside the attack's loop. ``fn`` is traced once per input shape
    (under ``jax.jit``: once per compilation); its closed-over parameters
    are kept. Convolutions inside ``jit``-ed sub-functions are rewritten too;
    those inside other higher-order primitives (``custom_jvp`` rules,
    ``scan`` bodies) are left alone.

    Args:
      fn: ``x -> logits`` (any function of arrays returning a pytree of arrays).

    Returns:
      The rewritten function; reverse-mode differentiable, not forward-mode.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models, parallel
      >>> model = models.get_model("fast_mnist")
      >>> logits_fn = models.eval_logits_fn(
      ...     model, models.init_model(model, jax.random.key(0), (28, 28, 1)))
      >>> fast = parallel.fast_conv_grads(logits_fn)
      >>> grad = lambda f: jax.jit(jax.grad(lambda x: f(x).sum()))
      >>> x = jnp.full((2, 28, 28, 1), 0.5)
      >>> bool(jnp.allclose(grad(fast)(x), grad(logits_fn)(x), atol=1e-6))
      True
    """

    def rewritten(*args):
        closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat_args = jax.tree.leaves(args)
        outs = _interpret(closed.jaxpr, closed.consts, *flat_args)
        return jax.tree.unflatten(jax.tree.structure(shapes), outs)

    return functools.wraps(fn)(rewritten)
