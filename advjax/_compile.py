"""Compiled once per model: one cache for the programs built around a model function.

Evaluation, AutoAttack, certification and eager attack calls each build a
jitted program around ``logits_fn``. Built afresh at every call, it is traced
and compiled at every call; :func:`per_model` keeps the last programs built,
keyed on the model function (and the other arguments) by identity, so a
notebook or a fuzz test that calls the same model again reuses them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from advjax._checks import is_concrete

#: How many built programs :func:`per_model` keeps per builder.
CACHE_SIZE = 32


def hashable(value) -> bool:
    """Whether ``value`` can key a cache (a model with ``__eq__`` but no ``__hash__`` cannot).

    Args:
      value: any value.

    Returns:
      ``True`` when ``hash(value)`` succeeds.

    Example:
      >>> from advjax._compile import hashable
      >>> hashable(abs), hashable((1, "a")), hashable([1]), hashable({"w": 1})
      (True, True, False, False)
    """
    try:
        hash(value)
    except TypeError:
        return False
    return True


def per_model(builder: Callable) -> Callable:
    """Caches ``builder(*args)``; arguments that cannot be hashed get a fresh build.

    The cache keeps the last :data:`CACHE_SIZE` builds (least recently used
    first out); ``build.cache_clear()`` empties it.

    Args:
      builder: ``builder(*args) -> program``, called with positional arguments
        only (a model function, attack settings, ...).

    Returns:
      ``build(*args)`` returning ``builder(*args)``, the same object for equal
      hashable arguments, with a ``cache_clear`` method.

    Example:
      >>> from advjax._compile import per_model
      >>> calls = []
      >>> @per_model
      ... def build(fn):
      ...     calls.append(fn)
      ...     return fn
      >>> f = abs
      >>> build(f) is build(f), len(calls)
      (True, 1)
      >>> _ = build([1]), build([1])  # unhashable: built afresh each time
      >>> len(calls)
      3
    """
    cached = functools.lru_cache(maxsize=CACHE_SIZE)(builder)

    @functools.wraps(builder)
    def build(*args):
        return cached(*args) if all(map(hashable, args)) else builder(*args)

    build.cache_clear = cached.cache_clear
    return build


def compiled_when_concrete(fn: Callable) -> Callable:
    """``fn`` run as one compiled program when called on concrete values, traced otherwise.

    The bound interpreters (:func:`advjax.certify.interval_bounds`,
    :func:`advjax.certify.crown_bounds`) walk a network equation by equation; called
    eagerly, as from a notebook, every equation is dispatched and compiled on its own
    (docs/certification.md gives the times measured before and after). Called under an
    outer transform (``jit``, ``grad``, ``vmap``), ``fn`` is traced into that program
    as before. Errors that ``fn`` raises while it is traced (shapes, unsupported
    operations) are raised the same way in both cases.

    Args:
      fn: a function of arrays (pytrees of arrays, ``None`` allowed) that JAX can trace.

    Returns:
      ``call(*args, **kwargs)`` with ``fn``'s signature; the compiled program is kept
      for later calls with the same shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax._compile import compiled_when_concrete
      >>> double = compiled_when_concrete(lambda x, scale=None: 2 * x)
      >>> double(jnp.ones(2)).tolist()
      [2.0, 2.0]
    """
    compiled = jax.jit(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if all(map(is_concrete, jax.tree_util.tree_leaves((args, kwargs)))):
            return compiled(*args, **kwargs)
        return fn(*args, **kwargs)

    return call
