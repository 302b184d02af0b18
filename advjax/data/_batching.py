"""Deterministic, resumable mini-batching of a host-resident :class:`Dataset`.

Images stay ``uint8`` on the host; each batch is gathered there, moved with
:func:`jax.device_put` and converted to ``float32`` in ``[0, 1]`` on the device. The order of
epoch ``e`` is ``jax.random.permutation(jax.random.fold_in(key, e), n)``, so any
``(epoch, batch)`` position can be resumed exactly.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from advjax.data._errors import DataError


@jax.jit
def _uint8_to_unit(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) / 255.0


def to_device(images) -> jax.Array:
    """Move ``uint8`` images to the default device as ``float32`` in ``[0, 1]`` (``x / 255``).

    The transfer is of the ``uint8`` bytes; the conversion runs on the device. XLA may
    evaluate the division as ``x * (1 / 255)``, which is within one ulp of ``x / 255`` and
    still maps 0 to exactly 0.0 and 255 to exactly 1.0.

    Args:
        images: ``uint8`` array (numpy or JAX) of any shape, typically NHWC.

    Returns:
        ``float32`` JAX array of the same shape.

    Raises:
        DataError: ``images`` is not ``uint8``.

    Example:
        >>> import numpy as np
        >>> from advjax.data import to_device
        >>> x = to_device(np.array([[0, 128, 255]], np.uint8))
        >>> x.dtype.name, x.min().item(), x.max().item()
        ('float32', 0.0, 1.0)
    """
    dtype = getattr(images, "dtype", None)
    if dtype != np.uint8:
        raise DataError(
            f"to_device expects uint8 images (0..255), got dtype {dtype}; images that are "
            "already floats in [0, 1] need no conversion."
        )
    return _uint8_to_unit(jax.device_put(images))


def _nonneg_int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise DataError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    try:
        value = operator.index(value)
    except TypeError:
        raise DataError(f"{what} must be an integer >= {minimum}, got {value!r}.") from None
    if value < minimum:
        raise DataError(f"{what} must be an integer >= {minimum}, got {value}.")
    return value


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Return the number of batches in one epoch of ``n`` examples.

    Args:
        n: Number of examples (>= 0).
        batch_size: Examples per batch (> 0).
        drop_last: Drop the final incomplete batch (``n // batch_size``) or keep it
            (``ceil(n / batch_size)``).

    Returns:
        The number of batches.

    Example:
        >>> from advjax.data import num_batches
        >>> num_batches(10, 4), num_batches(10, 4, drop_last=False)
        (2, 3)
    """
    n = _nonneg_int(n, "n")
    batch_size = _nonneg_int(batch_size, "batch_size", minimum=1)
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def epoch_permutation(key: jax.Array, epoch: int, n: int) -> np.ndarray:
    """Return the example order of ``epoch``: ``permutation(fold_in(key, epoch), n)``.

    Args:
        key: JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
        epoch: Epoch number (>= 0).
        n: Number of examples.

    Returns:
        Host ``int`` array, a permutation of ``range(n)``.

    Example:
        >>> import jax
        >>> from advjax.data import epoch_permutation
        >>> sorted(epoch_permutation(jax.random.key(0), 3, 5).tolist())
        [0, 1, 2, 3, 4]
    """
    epoch = _nonneg_int(epoch, "epoch")
    n = _nonneg_int(n, "n")
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(
            "batches expects a Dataset (an object with numpy .images and .labels), got "
            f"{type(dataset).__name__}."
        )
    if images.dtype != np.uint8:
        raise DataError(f"dataset images must be uint8 (0..255), got {images.dtype}.")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"dataset has {images.shape[0]} images but labels of shape {labels.shape}.")
    return images, labels


def batches(
    dataset,
    batch_size: int,
    *,
    key: jax.Array | None,
    epoch: int = 0,
    start_batch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Iterate over one epoch of ``dataset`` in mini-batches, on the device.

    Arguments are validated immediately (before the first batch is requested).

    Args:
        dataset: A :class:`Dataset` (uint8 NHWC images, int labels) held on the host.
        batch_size: Examples per batch (> 0).
        key: PRNG key defining the order of every epoch; may be ``None`` if not ``shuffle``.
        epoch: Epoch number; the order is ``permutation(fold_in(key, epoch), n)``.
        start_batch: Index of the first batch to yield, to resume inside an epoch; the
            batches yielded are exactly the tail of the full epoch.
        shuffle: If false, examples come in dataset order.
        drop_last: Drop the final incomplete batch.

    Returns:
        An iterator of ``(x, y)``: ``x`` ``float32`` in ``[0, 1]`` of shape
        ``(batch, H, W, C)``, ``y`` ``int32`` of shape ``(batch,)``, both JAX arrays.

    Raises:
        DataError: Bad arguments, or an epoch with no batch (``drop_last`` and fewer
            examples than ``batch_size``).

    Example:
        >>> import jax, numpy as np
        >>> from advjax.data import Dataset, batches
        >>> ds = Dataset(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10, dtype=np.int32), "t", 10)
        >>> [x.shape for x, y in batches(ds, 4, key=jax.random.key(0))]
        [(4, 2, 2, 1), (4, 2, 2, 1)]
    """
    images, labels = _arrays(dataset)
    n = images.shape[0]
    total = num_batches(n, batch_size, drop_last)
    start_batch = _nonneg_int(start_batch, "start_batch")
    epoch = _nonneg_int(epoch, "epoch")
    if epoch >= 2**32:
        raise DataError(f"epoch must be < 2**32, got {epoch}.")
    if total == 0:
        raise DataError(
            f"an epoch of {n} examples has no batch of size {batch_size} with drop_last=True; "
            "use a smaller batch_size or drop_last=False."
        )
    if start_batch > total:
        raise DataError(
            f"start_batch={start_batch} is past the end of the epoch ({total} batches)."
        )
    if shuffle:
        if key is None:
            raise DataError("shuffle=True needs a PRNG key, e.g. key=jax.random.key(0).")
        order = epoch_permutation(key, epoch, n)
    else:
        order = None
    return _iterate(images, labels, order, batch_size, start_batch, total)


def _iterate(images, labels, order, batch_size, start_batch, total):
    n = images.shape[0]
    for b in range(start_batch, total):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        index = slice(lo, hi) if order is None else order[lo:hi]
        yield to_device(images[index]), jax.device_put(labels[index].astype(np.int32))


class EpochBatch(NamedTuple):
    """One batch produced by :func:`epochs`, with its position for checkpointing.

    Attributes:
        epoch: The epoch the batch belongs to.
        batch: Its index within the epoch (resume after it with ``start_batch=batch + 1``).
        x: ``float32`` images ``[B, H, W, C]`` in ``[0, 1]``, on the device.
        y: ``int32`` labels ``[B]``, on the device.

    Example:
        >>> import jax, numpy as np
        >>> from advjax.data import Dataset, epochs
        >>> ds = Dataset(np.zeros((4, 2, 2, 1), np.uint8), np.arange(4, dtype=np.int32), "t", 4)
        >>> first = next(epochs(ds, 2, key=jax.random.key(0), num_epochs=1))
        >>> first.epoch, first.batch, first.x.shape, first.x.dtype.name, first.y.shape
        (0, 0, (2, 2, 2, 1), 'float32', (2,))
    """

    epoch: int
    batch: int
    x: jax.Array
    y: jax.Array


def epochs(
    dataset,
    batch_size: int,
    *,
    key: jax.Array | None,
    num_epochs: int,
    start_epoch: int = 0,
    start_batch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[EpochBatch]:
    """Iterate over epochs ``start_epoch .. num_epochs - 1``, resumable at any batch.

    ``start_batch`` applies to ``start_epoch`` only; later epochs start at batch 0. After a
    checkpoint at ``(epoch, batch)``, resume with ``start_epoch=epoch, start_batch=batch + 1``.

    Args:
        dataset: A :class:`Dataset` held on the host.
        batch_size: Examples per batch (> 0).
        key: PRNG key (see :func:`batches`).
        num_epochs: Total number of epochs (the last epoch is ``num_epochs - 1``).
        start_epoch: First epoch to run.
        start_batch: First batch within ``start_epoch``.
        shuffle: Shuffle each epoch.
        drop_last: Drop the final incomplete batch of each epoch.

    Returns:
        An iterator of :class:`EpochBatch` ``(epoch, batch, x, y)``: ``x`` float32
        ``[batch_size, H, W, C]`` in ``[0, 1]`` and ``y`` int32 ``[batch_size]``
        (the last batch smaller when ``drop_last`` is false).

    Raises:
        DataError: Eagerly, before the first batch: a negative or non-integer
            ``num_epochs`` / ``start_epoch``, ``start_epoch > num_epochs``, or any
            argument :func:`batches` refuses.

    Example:
        >>> import jax, numpy as np
        >>> from advjax.data import Dataset, epochs
        >>> ds = Dataset(np.zeros((4, 1, 1, 1), np.uint8), np.zeros(4, np.int32), "t", 1)
        >>> [(b.epoch, b.batch) for b in epochs(ds, 2, key=jax.random.key(0), num_epochs=2)]
        [(0, 0), (0, 1), (1, 0), (1, 1)]
    """
    num_epochs = _nonneg_int(num_epochs, "num_epochs")
    start_epoch = _nonneg_int(start_epoch, "start_epoch")
    if start_epoch > num_epochs:
        raise DataError(f"start_epoch={start_epoch} is after num_epochs={num_epochs}.")
    # Validate everything eagerly with the first epoch's arguments.
    first = (
        batches(
            dataset,
            batch_size,
            key=key,
            epoch=start_epoch,
            start_batch=start_batch,
            shuffle=shuffle,
            drop_last=drop_last,
        )
        if start_epoch < num_epochs
        else iter(())
    )

    def generate() -> Iterator[EpochBatch]:
        for epoch in range(start_epoch, num_epochs):
            it = (
                first
                if epoch == start_epoch
                else batches(
                    dataset, batch_size, key=key, epoch=epoch, shuffle=shuffle, drop_last=drop_last
                )
            )
            for i, (x, y) in enumerate(it, start=start_batch if epoch == start_epoch else 0):
                yield EpochBatch(epoch, i, x, y)

    return generate()
