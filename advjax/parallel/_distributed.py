"""Multi-host start-up and the per-host share of a data set."""

from __future__ import annotations

import os

import jax

from advjax._checks import check_positive_int

_CLUSTER_VARIABLES = (
    "JAX_COORDINATOR_ADDRESS",
    "SLURM_JOB_ID",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def _already_initialized() -> bool:
    try:
        from jax._src import distributed

        return distributed.global_state.client is not None
    except (ImportError, AttributeError):  # private API moved: let jax decide
        return False


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> tuple[int, int]:
    """Starts JAX's multi-host runtime when there is more than one process.

    A thin wrapper around ``jax.distributed.initialize``, called once per
    process before any other JAX call. It does nothing, so the same script runs
    unchanged on one machine, when ``num_processes`` is ``1``, or when no
    address is given and no cluster is detected (no ``JAX_COORDINATOR_ADDRESS``,
    SLURM, Open MPI or Cloud TPU variables), or when the runtime is already up.
    Otherwise all arguments go to ``jax.distributed.initialize`` (``None``
    means: detect from the cluster environment).

    Args:
      coordinator_address: ``"host:port"`` of process 0.
      num_processes: the number of processes.
      process_id: this process's index in ``[0, num_processes)``.
      **kwargs: more keywords for ``jax.distributed.initialize``
        (``local_device_ids``, ``initialization_timeout``, ...).

    Returns:
      ``(jax.process_index(), jax.process_count())``.

    Example:
      >>> from advjax import parallel
      >>> parallel.initialize_distributed()   # one process: nothing to start
      (0, 1)
    """
    single = num_processes == 1 or (
        coordinator_address is None
        and num_processes is None
        and not any(os.environ.get(name) for name in _CLUSTER_VARIABLES)
    )
    if not single and not _already_initialized():
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            **kwargs,
        )
    return jax.process_index(), jax.process_count()


def host_slice(n: int, process_index: int | None = None, process_count: int | None = None) -> slice:
    """This host's contiguous share of ``n`` examples (sizes differ by at most one).

    Host ``i`` of ``c`` gets ``[i * n // c, (i + 1) * n // c)``, so the shares
    cover ``range(n)`` exactly once, in order.

    Args:
      n: the number of examples (or batches) to split.
      process_index: this host's index; default ``jax.process_index()``.
      process_count: the number of hosts; default ``jax.process_count()``.

    Returns:
      A ``slice`` for indexing this host's examples.

    Raises:
      TypeError: ``n``, ``process_index`` or ``process_count`` is not an integer.
      ValueError: ``n`` or ``process_index`` is negative, ``process_count`` is
        less than 1, or ``process_index >= process_count``.

    Example:
      >>> from advjax import parallel
      >>> [parallel.host_slice(10, i, 3) for i in range(3)]
      [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
      >>> parallel.host_slice(10, 3, 3)
      Traceback (most recent call last):
        ...
      ValueError: process_index must be < process_count=3, got 3.
    """
    count = check_positive_int(
        jax.process_count() if process_count is None else process_count, "process_count"
    )
    index = jax.process_index() if process_index is None else process_index
    index = check_positive_int(index, "process_index", minimum=0)
    if index >= count:
        raise ValueError(f"process_index must be < process_count={count}, got {index}.")
    n = check_positive_int(n, "n", minimum=0)
    return slice(index * n // count, (index + 1) * n // count)
