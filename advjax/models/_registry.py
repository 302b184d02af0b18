"""Name -> model-constructor registry for the zoo."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from advjax.models._ibp_nets import IBPLarge, IBPMedium, IBPSmall
from advjax.models._mnist_nets import MLP, FastMNISTNet, MadryCNN, SmallCNN
from advjax.models._resnet import PreActResNet18, WideResNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "madry_cnn": MadryCNN,
    "fast_mnist": FastMNISTNet,
    "ibp_small": IBPSmall,
    "ibp_medium": IBPMedium,
    "ibp_large": IBPLarge,
    "small_cnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
    "wide_resnet": WideResNet,
    # TRADES (Zhang et al. 2019) and Madry et al. (2018): WRN-34-10
    "wide_resnet_34_10": functools.partial(WideResNet, depth=34, widen_factor=10),
}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted.

    Returns:
      The registered model names, in alphabetical order.

    Example:
      >>> list_models()[:3]
      ['fast_mnist', 'ibp_large', 'ibp_medium']
      >>> "madry_cnn" in list_models()
      True
    """
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds a zoo model by name.

    Args:
      name: One of :func:`list_models` (case-insensitive; ``-`` is read as ``_``).
      **kwargs: Forwarded to the model's constructor (e.g. ``num_classes``,
        ``depth``, ``widen_factor``, ``mean``, ``std``).

    Returns:
      The (unbound) Flax module.

    Raises:
      ValueError: If ``name`` is unknown; the message lists the known names.

    Example:
      >>> get_model("wide_resnet", depth=10, widen_factor=1).depth
      10
      >>> get_model("resnet50")
      Traceback (most recent call last):
        ...
      ValueError: Unknown model 'resnet50'; known models: fast_mnist, ibp_large, ...
    """
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[key](**kwargs)
