"""Per-example loops cut into segments, with finished examples dropped between them.

A compiled loop over a batch runs until its last example is done: one stubborn
point keeps the whole batch busy. Cut the loop into segments instead, keep each
example's carry on the host between them, and start every segment with only
the examples still running, packed into the fixed, bucketed batch sizes of
:func:`advjax.data.map_batches`: the compiled program then spends no work on
finished examples beyond the padding of the last batch. Because the carry is
per example and the loop's schedule is indexed by the iteration, an example's
result does not depend on which others shared its batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from advjax.data import map_batches


def _segment_stops(steps: int, segment: int) -> list[int]:
    return list(range(segment, steps, segment)) + [steps]


def compacted_loop(
    init: Callable,
    advance: Callable,
    arrays: Sequence,
    *,
    steps: int,
    segment: int,
    batch_size: int,
    sharding: jax.sharding.Sharding | None = None,
    done: str = "found",
    min_bucket: int = 32,
    groups: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Runs a per-example loop to ``steps``, only on the examples not yet done.

    Args:
      init: ``(*batch_arrays) -> carry``, a dict of arrays with a leading batch
        axis (usually jitted).
      advance: ``(*batch_arrays, carry, start, stop) -> carry``, the loop from
        iteration ``start`` to ``stop`` (scalars, traced: one compilation serves
        every segment).
      arrays: per-example inputs with a common leading size ``N``.
      steps: the loop's iterations.
      segment: iterations between two compactions (``>= 1``).
      batch_size: the largest compiled batch.
      sharding: optional batch sharding (see :func:`advjax.data.map_batches`).
      done: the carry's ``[N]`` bool entry that marks a finished example.
      min_bucket: the smallest compiled batch (a few rows left run padded to
        it: fewer programs to compile, little extra work).
      groups: optional ``[N]`` labels: rows with one label finish together, as
        soon as one of them is done (several runs on one example that only
        need one success).

    Returns:
      ``(carry, example_iterations)``: the final carry of every example (NumPy,
      an example's carry frozen where it finished) and the number of
      example-iterations run (padding not counted; an upper bound on the
      examples still running at each iteration).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from advjax.evaluation import compacted_loop
      >>> init = jax.jit(lambda x: {"value": x, "found": x >= 10})
      >>> def advance(x, carry, start, stop):  # adds 1 per iteration until 10
      ...     del x
      ...     def body(i, c):
      ...         value = jnp.where(c["found"], c["value"], c["value"] + 1)
      ...         return {"value": value, "found": value >= 10}
      ...     return jax.lax.fori_loop(start, stop, body, carry)
      >>> carry, work = compacted_loop(init, jax.jit(advance), [np.array([0, 8, 9])],
      ...                              steps=20, segment=5, batch_size=4)
      >>> carry["value"].tolist(), work
      ([10, 10, 10], 20)
    """
    arrays = [np.asarray(a) for a in arrays]
    batching = dict(batch_size=batch_size, bucket=True, sharding=sharding, min_bucket=min_bucket)
    carry = map_batches(init, arrays, **batching)
    names = sorted(carry)
    work, start = 0, 0
    for stop in _segment_stops(steps, segment):
        if groups is not None:
            carry[done] = _done_together(carry[done], groups)
        rows = np.flatnonzero(~carry[done])
        if not rows.size:
            break
        work += rows.size * (stop - start)
        begin, end = jnp.int32(start), jnp.int32(stop)

        def step(*batch, begin=begin, end=end):
            inputs, state = (
                batch[: len(arrays)],
                dict(zip(names, batch[len(arrays) :], strict=True)),
            )
            return advance(*inputs, state, begin, end)

        updated = map_batches(
            step,
            [*arrays, *(carry[name] for name in names)],
            rows=rows,
            **batching,
        )
        for name in names:
            carry[name][rows] = updated[name]
        start = stop
    return carry, work


def _done_together(done: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``done`` spread over each group: a row is done when any row of its group is."""
    labels, index = np.unique(groups, return_inverse=True)
    any_done = np.zeros(labels.size, bool)
    np.logical_or.at(any_done, index, done)
    return any_done[index]


def row_keys(key: jax.Array, rows: np.ndarray) -> np.ndarray:
    """Per-example key data ``[len(rows), ...]``: row ``r`` gets ``fold_in(key, r)``.

    An example's randomness then depends on its index in the data set only,
    not on the batch it lands in (see :func:`compacted_loop`).

    Args:
      key: a PRNG key.
      rows: indices into the data set.

    Returns:
      ``jax.random.key_data`` of the keys, as NumPy (pass through
      ``jax.random.wrap_key_data`` inside the compiled function).

    Example:
      >>> import jax, numpy as np
      >>> from advjax.evaluation._compaction import row_keys
      >>> data = row_keys(jax.random.key(0), np.array([3, 5]))
      >>> data.shape[0], bool((data[0] != data[1]).any())
      (2, True)
    """
    rows = np.asarray(rows, np.int64).reshape(-1)
    if rows.size and rows.min() < 0:
        raise ValueError(f"rows must be indices >= 0, got {rows.min()}.")
    # keys for every index below a power of two: one program per data-set size, not per subset
    reach = int(rows.max()) + 1 if rows.size else 1
    every = _fold_in_range(key, max(64, 1 << (reach - 1).bit_length()))
    return np.asarray(every)[rows]


@functools.partial(jax.jit, static_argnums=1)
def _fold_in_range(key, count: int):
    """``key_data(fold_in(key, r))`` for ``r`` in ``[0, count)``."""
    rows = jnp.arange(count, dtype=jnp.uint32)
    return jax.random.key_data(jax.vmap(lambda r: jax.random.fold_in(key, r))(rows))
