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
    """Whether ``value`` can key a cache (a model with ``__eq__`` but no ``__hash__`` cannot)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def per_model(builder: Callable) -> Callable:
    """Caches ``builder(*args)``; arguments that cannot be hashed get a fresh build.

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
    """
    cached = functools.lru_cache(maxsize=CACHE_SIZE)(builder)

    @functools.wraps(builder)
    def build(*args):
        return cached(*args) if all(map(hashable, args)) else builder(*args)

    build.cache_clear = cached.cache_clear
    return build
