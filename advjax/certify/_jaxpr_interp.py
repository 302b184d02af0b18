"""A small jaxpr interpreter shared by the bound-propagation transforms.

The interpreter walks a jaxpr equation by equation. Every variable holds either a
*constant* (a concrete array or a tracer that does not depend on the bounded
input, e.g. closed-over parameters and literals) or an abstract value supplied by
the caller (an :class:`Interval` for IBP, a graph node for CROWN). Equations whose
inputs are all constants are evaluated directly with ``primitive.bind`` (constant
folding); nested calls (``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``,
``custom_vjp_call``, ``remat``: the table :data:`advjax.certify._primitives.CALLS`,
keyed by primitive objects) are inlined recursively; every other equation is
handed to a caller-supplied ``handler``.

Only the public jaxpr surface is used (``jax.make_jaxpr``, ``jax.extend.core``
with a fallback to ``jax.core``), so the module works from JAX 0.6 onwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

try:  # JAX >= 0.4.3x exposes the jaxpr data types here.
    from jax.extend import core as _jcore

    Literal = _jcore.Literal
    Var = _jcore.Var
    ClosedJaxpr = _jcore.ClosedJaxpr
except (ImportError, AttributeError):  # pragma: no cover - old JAX fallback
    from jax import core as _jcore  # type: ignore[no-redef]

    Literal = _jcore.Literal
    Var = _jcore.Var
    ClosedJaxpr = _jcore.ClosedJaxpr

from advjax.certify._primitives import CALLS

__all__ = [
    "Interval",
    "UnsupportedPrimitiveError",
    "source_line",
    "trace",
    "interpret",
]


class Interval(NamedTuple):
    """An axis-aligned box ``{x : lower <= x <= upper}`` (elementwise).

    ``Interval`` is a ``NamedTuple`` and therefore a JAX pytree, so it can cross
    ``jax.jit``/``jax.vmap`` boundaries.

    Attributes:
        lower: Lower ends (an array, any shape).
        upper: Upper ends, same shape as ``lower``.

    Example:
        >>> import jax.numpy as jnp
        >>> box = Interval(jnp.zeros(2), jnp.ones(2))
        >>> box.center.tolist(), box.radius.tolist()
        ([0.5, 0.5], [0.5, 0.5])
    """

    lower: Any
    upper: Any

    @property
    def center(self):
        """Midpoint ``(lower + upper) / 2``."""
        return (self.lower + self.upper) / 2

    @property
    def radius(self):
        """Half-width ``(upper - lower) / 2`` (non-negative for a valid box)."""
        return (self.upper - self.lower) / 2

    @property
    def shape(self):
        """Shape of the bounded array."""
        return jnp.shape(self.lower)

    @property
    def dtype(self):
        """Dtype of the bounded array."""
        return jnp.result_type(self.lower)


class UnsupportedPrimitiveError(NotImplementedError):
    """Raised when a bound propagator meets a primitive it has no rule for.

    The message names the primitive, the user source line that produced it and
    what to do about it.

    Args:
        primitive: The primitive's name (``eqn.primitive.name``).
        where: The user source line (:func:`source_line`).
        method: The bound propagator, e.g. ``"CROWN"``.
        hint: What to do instead (default: a generic advice).

    Example:
        >>> import jax.numpy as jnp
        >>> from advjax.certify import interval_bounds
        >>> try:
        ...     interval_bounds(jnp.sin)(jnp.zeros(1), jnp.ones(1))
        ... except UnsupportedPrimitiveError as err:
        ...     err.primitive, err.method
        ('sin', 'Interval bound propagation')
    """

    def __init__(self, primitive: str, where: str, method: str, hint: str = ""):
        self.primitive = primitive
        self.where = where
        self.method = method
        self.hint = hint
        msg = (
            f"{method} has no rule for primitive '{primitive}' (from {where}) applied to a "
            "value that depends on the bounded input."
        )
        if hint:
            msg += " " + hint
        else:
            msg += (
                " Rewrite this part of the model with supported operations (affine layers, "
                "ReLU/max/min, monotone activations, pooling, reshapes), make it independent "
                "of the input (e.g. a closed-over constant), or use a method that supports it."
            )
        super().__init__(msg)


def source_line(eqn) -> str:
    """Best-effort ``file:line (function)`` summary of where ``eqn`` was created.

    Args:
        eqn: A ``JaxprEqn``.

    Returns:
        A human readable location, or ``"<unknown source>"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> eqn = jax.make_jaxpr(jnp.sin)(1.0).jaxpr.eqns[0]
        >>> isinstance(source_line(eqn), str)
        True
    """
    try:
        from jax._src import source_info_util

        return str(source_info_util.summarize(eqn.source_info))
    except Exception:  # noqa: BLE001 - purely cosmetic
        return "<unknown source>"


def _body(eqn):
    """Returns ``(jaxpr, consts)`` of an inlinable call equation, or ``None``."""
    names = CALLS.get(eqn.primitive)
    if names is None:
        return None
    for name in names:
        sub = eqn.params.get(name)
        if sub is None:
            continue
        if hasattr(sub, "jaxpr") and hasattr(sub, "consts"):
            return sub.jaxpr, list(sub.consts)
        if hasattr(sub, "eqns"):
            return sub, []
    return None


def trace(fn: Callable, *example_args) -> tuple[Any, Any]:
    """Traces ``fn`` on the shapes/dtypes of ``example_args``.

    Args:
        fn: The function to trace.
        *example_args: Pytrees of arrays (only shapes and dtypes are used).

    Returns:
        ``(closed_jaxpr, out_tree)``.

    Example:
        >>> import jax.numpy as jnp
        >>> closed, out_tree = trace(lambda x: {"y": jnp.tanh(x)}, jnp.zeros(3))
        >>> [e.primitive.name for e in closed.jaxpr.eqns], out_tree.num_leaves
        (['tanh'], 1)
    """
    specs = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), example_args
    )
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*specs)
    return closed, jax.tree_util.tree_structure(out_shape)


def interpret(
    jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    handler: Callable[[Any, list[Any]], list[Any]],
    is_abstract: Callable[[Any], bool],
) -> list[Any]:
    """Evaluates ``jaxpr`` with abstract values for some inputs.

    Args:
        jaxpr: An open ``Jaxpr``.
        consts: Values for ``jaxpr.constvars``.
        args: Values for ``jaxpr.invars``; constants or abstract values.
        handler: ``handler(eqn, invals) -> outvals`` for equations with at least
            one abstract input that are not inlinable calls.
        is_abstract: Predicate telling abstract values from constants.

    Returns:
        The list of output values.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> closed = jax.make_jaxpr(lambda x, c: jnp.sin(c) + x)(0.0, 1.0)
        >>> def handler(eqn, invals):  # "abstract" values are strings here
        ...     return [f"{eqn.primitive.name}(...)"]
        >>> interpret(closed.jaxpr, closed.consts, ["x", 1.0], handler,
        ...           lambda v: isinstance(v, str))
        ['add(...)']
    """
    env: dict[Any, Any] = {}

    def read(v):
        if isinstance(v, Literal):
            return v.val
        return env[v]

    def write(v, val):
        if isinstance(v, Var) and type(v).__name__ != "DropVar":
            env[v] = val

    for v, val in zip(jaxpr.constvars, consts, strict=True):
        write(v, val)
    for v, val in zip(jaxpr.invars, args, strict=True):
        write(v, val)

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        body = _body(eqn)
        if body is not None:
            sub_jaxpr, sub_consts = body
            try:
                outvals = interpret(sub_jaxpr, sub_consts, invals, handler, is_abstract)
            except UnsupportedPrimitiveError as err:
                if err.where.strip() and err.where != "<unknown source>":
                    raise
                # Library internals carry no user frame: point at the enclosing call.
                raise UnsupportedPrimitiveError(
                    err.primitive, source_line(eqn), err.method, err.hint
                ) from None
        elif not any(is_abstract(x) for x in invals):
            outvals = eqn.primitive.bind(*invals, **eqn.params)
            if not eqn.primitive.multiple_results:
                outvals = [outvals]
        else:
            outvals = handler(eqn, invals)
        for v, val in zip(eqn.outvars, outvals, strict=True):
            write(v, val)
    return [read(v) for v in jaxpr.outvars]
