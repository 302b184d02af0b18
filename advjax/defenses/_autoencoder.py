"""A small convolutional autoencoder for MNIST-sized images, trained with optax.

Used by :func:`advjax.defenses.reconstruction_detector` (MagNet-style
detection; Meng & Chen 2017): adversarial inputs tend to lie off the data
manifold the autoencoder learned, so they are reconstructed worse.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from advjax._checks import check_positive_int


class Autoencoder(nn.Module):
    """Conv(16, 3x3) -> avg-pool -> Conv(8) -> upsample -> Conv(16) -> Conv(C), sigmoid output.

    Input sides must be even. About 3k parameters on MNIST (2,633 with the
    default ``features=16`` and one channel). Calling the module maps images
    ``x[B, H, W, C]`` (values in ``[0, 1]``, ``H`` and ``W`` even) to their
    reconstructions, of the same shape, with values in ``(0, 1)``.

    Attributes:
      features: channels of the outer convolutions (the bottleneck has
        ``features // 2``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import Autoencoder
      >>> model = Autoencoder(features=4)
      >>> x = jnp.zeros((2, 8, 8, 1))
      >>> variables = model.init(jax.random.key(0), x)
      >>> out = model.apply(variables, x)
      >>> out.shape, bool(((out > 0) & (out < 1)).all())
      ((2, 8, 8, 1), True)
    """

    features: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstructs images ``x[B, H, W, C]`` (``H``, ``W`` even).

        Args:
          x: images in ``[0, 1]``.

        Returns:
          The reconstructions ``[B, H, W, C]``, values in ``(0, 1)``.
        """
        channels = x.shape[-1]
        h = nn.sigmoid(nn.Conv(self.features, (3, 3))(x))
        h = nn.avg_pool(h, (2, 2), (2, 2))
        h = nn.sigmoid(nn.Conv(self.features // 2, (3, 3))(h))
        batch, height, width, feats = h.shape
        h = jax.image.resize(h, (batch, 2 * height, 2 * width, feats), "nearest")
        h = nn.sigmoid(nn.Conv(self.features, (3, 3))(h))
        return nn.sigmoid(nn.Conv(channels, (3, 3))(h))


def train_autoencoder(
    images,
    *,
    key: jax.Array,
    epochs: int = 5,
    batch_size: int = 100,
    learning_rate: float = 3e-3,
    features: int = 16,
) -> Callable[[jax.Array], jax.Array]:
    """Trains an :class:`Autoencoder` on ``images[N, H, W, C]`` in ``[0, 1]`` (MSE, Adam).

    One ``lax.scan`` per epoch over shuffled mini-batches.

    Returns:
      ``x -> reconstruction`` with the trained parameters closed over.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import train_autoencoder
      >>> x = jax.random.uniform(jax.random.key(0), (20, 8, 8, 1))
      >>> ae = train_autoencoder(x, key=jax.random.key(1), epochs=1, batch_size=10)
      >>> ae(x).shape
      (20, 8, 8, 1)
    """
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    images = jnp.asarray(np.asarray(images), jnp.float32)
    if images.ndim != 4 or images.shape[1] % 2 or images.shape[2] % 2:
        raise ValueError(
            f"train_autoencoder expects [N, H, W, C] with even H, W; got {images.shape}"
        )
    n_batches = len(images) // batch_size
    if n_batches == 0:
        raise ValueError(f"train_autoencoder: batch_size {batch_size} exceeds {len(images)} images")
    model = Autoencoder(features)
    init_key, key = jax.random.split(key)
    params = model.init(init_key, images[:1])
    tx = optax.adam(learning_rate)

    def loss_fn(params, batch):
        return jnp.mean((model.apply(params, batch) - batch) ** 2)

    @jax.jit
    def epoch(carry, epoch_key):
        def step(carry, idx):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, images[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        order = jax.random.permutation(epoch_key, len(images))[: n_batches * batch_size]
        carry, _ = jax.lax.scan(step, carry, order.reshape(n_batches, batch_size))
        return carry

    carry = (params, tx.init(params))
    for epoch_key in jax.random.split(key, epochs):
        carry = epoch(carry, epoch_key)
    trained = carry[0]
    return lambda x: model.apply(trained, x)
