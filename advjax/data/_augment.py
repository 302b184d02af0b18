"""On-device data augmentation for training steps: random crops and horizontal flips."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from advjax._checks import check_positive_int


def random_crop_flip(x: jax.Array, key: jax.Array, *, padding: int = 4) -> jax.Array:
    """The standard CIFAR-10 augmentation: a random crop of the zero-padded image, then a flip.

    Each image is padded with ``padding`` zero pixels on every side, a window
    of its own size is cut at a uniformly random offset, and the result is
    mirrored left-right with probability 1/2: torchvision's
    ``RandomCrop(size, padding=4)`` followed by ``RandomHorizontalFlip()``, as
    in the training code of Madry et al. (2018), TRADES and fast adversarial
    training (Wong et al. 2020, arXiv:2001.03994). Runs inside ``jit``; every
    example draws its own offsets and flip from ``key``.

    Args:
      x: images ``[B, H, W, C]`` (any float dtype), values in the valid range.
      key: PRNG key.
      padding: pixels of zero padding per side (the largest shift), ``>= 1``.

    Returns:
      The augmented images, same shape and dtype as ``x``.

    Raises:
      ValueError: ``x`` is not 4-d, or ``padding`` is not a positive integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.data import random_crop_flip
      >>> x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
      >>> out = random_crop_flip(x, jax.random.key(0), padding=1)
      >>> out.shape, out.dtype
      ((2, 4, 4, 1), dtype('float32'))
    """
    padding = check_positive_int(padding, "padding")
    if jnp.ndim(x) != 4:
        raise ValueError(f"random_crop_flip needs images [B, H, W, C], got shape {jnp.shape(x)}.")
    batch, height, width, _ = x.shape
    offset_key, flip_key = jax.random.split(key)
    offsets = jax.random.randint(offset_key, (batch, 2), 0, 2 * padding + 1)
    flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop(image, offset, flip):
        window = jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, image.shape[-1])
        )
        return jnp.where(flip, window[:, ::-1], window)

    return jax.vmap(crop)(padded, offsets, flips)
