"""Running a compiled function over a data set in fixed-size padded batches.

Every evaluation in advjax (robust accuracy sweeps, AutoAttack, defense
evaluation, certified accuracy, compacted attack ensembles) walks a host
data set the same way: cut it into batches of one size so that the compiled
function is traced once, pad the last batch with copies of a real example,
drop the padded rows from the outputs, and optionally run only on the rows
still worth the work (the points no attack has broken yet). This module is
that walk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm  # text bars: tqdm.auto warns in notebooks without ipywidgets

from advjax._checks import check_positive_int

__all__ = ["bucket_size", "map_batches"]


def bucket_size(count: int, batch_size: int, minimum: int = 1) -> int:
    """The padded size for ``count`` rows: the next power of two, at most ``batch_size``.

    Padding a shrinking set of rows (the points still robust after each
    attack) to powers of two keeps the number of compiled shapes at about
    ``log2(batch_size)`` while wasting less than half of each batch.

    Args:
      count: number of real rows (``>= 0``).
      batch_size: the largest batch.
      minimum: the smallest padded size (fewer shapes to compile for a loop
        that runs long on a few rows).

    Returns:
      An ``int`` in ``[min(minimum, batch_size), batch_size]``.

    Example:
      >>> from advjax.data import bucket_size
      >>> [bucket_size(n, 64) for n in (0, 1, 5, 64, 100)]
      [1, 1, 8, 64, 64]
      >>> bucket_size(5, 64, minimum=16)
      16
    """
    return min(max(1 << max(count - 1, 0).bit_length(), minimum), batch_size)


def _devices_of(sharding) -> int:
    return 1 if sharding is None else len(sharding.device_set)


def _round_up(size: int, divisor: int) -> int:
    return -(-size // divisor) * divisor


def map_batches(
    fn: Callable,
    arrays: Sequence,
    *,
    batch_size: int,
    key: jax.Array | None = None,
    rows: np.ndarray | None = None,
    bucket: bool = False,
    sharding: jax.sharding.Sharding | None = None,
    progress: bool | str = False,
    min_bucket: int = 1,
):
    """Applies ``fn`` to ``arrays`` in fixed-size padded batches; returns the outputs of real rows.

    The rows (all of them, or ``rows``) are cut in order into chunks of at most
    ``batch_size``; each chunk is padded to the compiled size by repeating its
    first row (a valid input, so the padded rows cannot fail a check), ``fn``
    runs on the gathered batch, and the padded rows are dropped from its
    outputs. ``fn`` must treat examples independently (every attack and
    prediction does); its outputs are pytrees of arrays whose leading axis is
    the batch.

    Args:
      fn: ``(*batch_arrays) -> outputs``, or ``(*batch_arrays, key) -> outputs``
        when ``key`` is given; usually a ``jax.jit``-compiled function.
      arrays: host or device arrays with a common leading size ``N``.
      batch_size: rows per compiled batch (``>= 1``).
      key: if given, batch ``b`` gets ``jax.random.fold_in(key, b)``, so results
        do not depend on how many batches other calls ran.
      rows: optional integer indices into ``[0, N)``: run on these rows only
        (in this order) and return their outputs (``len(rows)`` rows).
      bucket: pad to :func:`bucket_size` instead of ``batch_size`` (for small,
        shrinking subsets: a few compiled shapes, little padding).
      sharding: optional batch sharding; batch sizes are rounded up to a
        multiple of its device count and each batch is placed with it.
      progress: show a tqdm progress bar (a string is its description).
      min_bucket: with ``bucket``, the smallest padded size.

    Returns:
      The outputs of ``fn`` for the real rows, as NumPy arrays concatenated
      along the leading axis (same pytree structure as one call's outputs).

    Raises:
      ValueError: If ``batch_size`` is not a positive integer, ``arrays`` is
        empty or its leading sizes differ, or ``rows`` is out of range.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from advjax.data import map_batches
      >>> square = jax.jit(lambda x: x**2)
      >>> map_batches(square, [np.arange(5.0)], batch_size=2).tolist()
      [0.0, 1.0, 4.0, 9.0, 16.0]
      >>> map_batches(square, [np.arange(5.0)], batch_size=4, rows=np.array([4, 1])).tolist()
      [16.0, 1.0]
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if not arrays:
        raise ValueError("map_batches needs at least one array.")
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in arrays}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every array needs the same leading size, got {sorted(map(str, sizes))}.")
    (total,) = sizes
    rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= total):
        raise ValueError(
            f"rows must index [0, {total}), got values in [{rows.min()}, {rows.max()}]."
        )
    devices = _devices_of(sharding)
    arrays = [a if isinstance(a, jax.Array) else np.asarray(a) for a in arrays]

    def call(take: np.ndarray, index: int):
        batch = [a[take] for a in arrays]
        if sharding is not None:
            batch = jax.device_put(batch, sharding)
        if key is None:
            return fn(*batch)
        return fn(*batch, jax.random.fold_in(key, index))

    if rows.size == 0:  # the outputs' structure, with no rows (and maybe no data at all)
        size = _round_up(1, devices)
        batch = [jax.ShapeDtypeStruct((size, *np.shape(a)[1:]), a.dtype) for a in arrays]
        extra = [] if key is None else [key]
        shapes = jax.eval_shape(fn, *batch, *extra)
        return jax.tree.map(lambda s: np.zeros((0, *s.shape[1:]), s.dtype), shapes)
    starts = range(0, rows.size, batch_size)
    if progress:
        starts = tqdm(starts, desc=progress if isinstance(progress, str) else None, leave=False)
    outputs = []
    for index, start in enumerate(starts):
        chunk = rows[start : start + batch_size]
        size = bucket_size(chunk.size, batch_size, min_bucket) if bucket else batch_size
        size = _round_up(max(size, chunk.size), devices)
        take = np.concatenate([chunk, np.full(size - chunk.size, chunk[0])])
        out = call(take, index)
        outputs.append(jax.tree.map(lambda o, n=chunk.size: np.asarray(o)[:n], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
