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
