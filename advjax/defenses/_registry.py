"""Preprocessors by name, for configuration files and the command line."""

from __future__ import annotations

from advjax.defenses._jpeg import jpeg
from advjax.defenses._preprocess import (
    Preprocessor,
    bit_depth,
    gaussian_noise,
    gaussian_smoothing,
    median_smoothing,
    random_resize_pad,
)


def get_preprocessor(name: str, **kwargs) -> Preprocessor:
    """Builds a preprocessor by name (``"bit_depth"``, ``"jpeg"``, ...).

    Raises:
      ValueError: If ``name`` is unknown (the message lists the known names).

    Example:
      >>> from advjax.defenses import get_preprocessor
      >>> get_preprocessor("bit_depth", bits=4).name
      'bit_depth(4)'
    """
    factories = {
        "bit_depth": bit_depth,
        "median_smoothing": median_smoothing,
        "gaussian_smoothing": gaussian_smoothing,
        "gaussian_noise": gaussian_noise,
        "random_resize_pad": random_resize_pad,
        "jpeg": jpeg,
    }
    if name not in factories:
        raise ValueError(f"unknown preprocessor {name!r}; expected one of {sorted(factories)}")
    return factories[name](**kwargs)
