"""PyTorch's default initialisation for Flax dense and conv layers.

PyTorch's ``nn.Linear`` and ``nn.Conv2d`` draw weights and biases from
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))``); Flax
draws kernels from LeCun-normal (about 1.7x the standard deviation) and zeros the
biases. Reproducing a PyTorch reference recipe is only faithful with PyTorch's
initial weights: fast FGSM-RS training of the small MNIST net, for one, is
sensitive to it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import traverse_util


def torch_default_init(params, key: jax.Array):
    """Redraws every ``kernel`` (and the ``bias`` beside it) as PyTorch's defaults would.

    A kernel's fan-in is the product of all its axes but the last (Flax kernels
    are ``[..., in, out]`` for both dense and conv layers). Other parameters
    (BatchNorm scales and offsets, for instance) are kept as they are.

    Args:
      params: a Flax parameter tree (``variables["params"]``).
      key: PRNG key; each layer uses ``fold_in(key, its index in sorted order)``.

    Returns:
      A parameter tree of the same structure, shapes and dtypes.

    Raises:
      ValueError: if a ``bias`` has neither a ``kernel`` (to take the fan-in
        from) nor a ``scale`` (a normalisation layer's offset) beside it.

    Example:
      >>> import jax
      >>> from advjax import models
      >>> model = models.get_model("fast_mnist")
      >>> params = models.init_model(model, jax.random.key(0), (28, 28, 1))["params"]
      >>> redrawn = models.torch_default_init(params, jax.random.key(1))
      >>> bound = 1 / (4 * 4 * 1) ** 0.5
      >>> float(abs(redrawn["conv1"]["bias"]).max()) <= bound
      True
    """
    flat = traverse_util.flatten_dict(params)
    kernels = sorted(path for path in flat if path[-1] == "kernel")
    fan_in = {path[:-1]: math.prod(flat[path].shape[:-1]) for path in kernels}
    normalisers = {path[:-1] for path in flat if path[-1] == "scale"}
    for path in flat:
        # A normalisation layer's offset starts at 0 in both frameworks: kept as it is.
        if path[-1] == "bias" and path[:-1] not in fan_in and path[:-1] not in normalisers:
            raise ValueError(
                f"parameter {'/'.join(map(str, path))} is a bias without a kernel (or a "
                "normalisation scale) beside it; torch_default_init handles Dense/Conv layers "
                "(kernel + bias) and keeps BatchNorm/LayerNorm parameters."
            )
    out = dict(flat)
    for index, layer in enumerate(sorted(fan_in)):
        bound = 1.0 / math.sqrt(fan_in[layer])
        kernel_key, bias_key = jax.random.split(jax.random.fold_in(key, index))
        for name, name_key in (("kernel", kernel_key), ("bias", bias_key)):
            path = (*layer, name)
            if path in flat:
                value = flat[path]
                out[path] = jax.random.uniform(
                    name_key, value.shape, jnp.float32, -bound, bound
                ).astype(value.dtype)
    return traverse_util.unflatten_dict(out)
