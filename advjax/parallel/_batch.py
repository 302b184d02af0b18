"""Placing a batch on a mesh: pad to a multiple of the device count, then shard."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import check_positive_int
from advjax.parallel._mesh import batch_divisor


def padded_size(n: int, divisor: int) -> int:
    """The smallest multiple of ``divisor`` that is ``>= n`` (and ``>= divisor``).

    Args:
      n: the number of rows (examples) to place.
      divisor: the device count the rows are split over.

    Returns:
      The padded number of rows.

    Raises:
      TypeError: ``divisor`` is not an integer.
      ValueError: ``divisor`` is less than 1.

    Example:
      >>> from advjax import parallel
      >>> parallel.padded_size(10, 8)
      16
      >>> parallel.padded_size(0, 4)
      4
    """
    divisor = check_positive_int(divisor, "divisor")
    return max(-(-n // divisor), 1) * divisor


def _pad_leading(leaf, size: int):
    """Pads the leading axis to ``size`` by repeating the first row (a valid input)."""
    missing = size - leaf.shape[0]
    if missing == 0:
        return leaf
    lib = jnp if isinstance(leaf, jax.Array) else np
    return lib.concatenate([leaf, lib.repeat(leaf[:1], missing, axis=0)])


def shard_batch(batch, sharding: jax.sharding.Sharding, *, size: int | None = None):
    """Pads a batch to a multiple of the device count and splits it over the devices.

    Every array in ``batch`` (an array or a pytree such as ``(x, y)``) must
    share its leading size ``n``. The batch is padded to ``size`` rows
    (default: ``n`` rounded up to a multiple of the devices holding this
    process's share) by repeating the first example, so padded rows are valid
    inputs; the returned ``mask`` marks the real ones. With several processes
    each one passes its own share (see :func:`host_slice`) and the result is
    one global array made with ``jax.make_array_from_process_local_data``;
    every process must then pad to the same ``size``.

    Args:
      batch: an array or pytree of arrays with a common leading axis.
      sharding: where to put it, usually :func:`batch_sharding`.
      size: the padded number of rows this process contributes.

    Returns:
      ``(sharded_batch, mask)``: ``sharded_batch`` has the structure of
      ``batch`` with every leading axis padded to ``N`` rows, and ``mask`` is a
      boolean ``[N]`` array sharded like the batch, ``True`` for real examples.

    Raises:
      ValueError: ``batch`` holds no arrays, its arrays differ in leading size
        (or one is a scalar), or ``size`` is smaller than the batch or not a
        multiple of this process's device count.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import parallel
      >>> sharding = parallel.batch_sharding(parallel.make_mesh())
      >>> (x, y), mask = parallel.shard_batch((jnp.ones((3, 2)), jnp.arange(3)), sharding)
      >>> int(mask.sum()), x.shape[0] >= 3
      (3, True)
    """
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("shard_batch got an empty batch.")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every array in the batch needs the same leading size, got {sizes}.")
    (n,) = sizes
    processes = jax.process_count()
    divisor = max(batch_divisor(sharding) // processes, 1)
    if size is None:
        size = padded_size(n, divisor)
    if size < n or size % divisor:
        raise ValueError(
            f"size={size} must be >= the batch size {n} and a multiple of {divisor} "
            "(the devices holding this process's share)."
        )
    mask = np.arange(size) < n
    padded = jax.tree.map(lambda leaf: _pad_leading(leaf, size), batch)
    if processes == 1:
        return jax.device_put((padded, mask), sharding)
    return jax.tree.map(
        lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)),
        (padded, mask),
    )
