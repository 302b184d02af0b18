"""Device meshes and the three shardings advjax uses: batch, replicated, parameter."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from advjax._checks import check_positive_int

DEFAULT_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None, axis: str = DEFAULT_AXIS) -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every process).

    The same code then runs on one device or many: with one device every
    sharding below is trivial. The axis is ``Auto`` (XLA propagates shardings
    through the program), not JAX's ``Explicit`` sharding-in-types mode, so
    attacks and models need no sharding annotations.

    Args:
      devices: the devices, in mesh order; ``None`` uses ``jax.devices()``.
      axis: the axis name; the batch is split along it.

    Returns:
      A ``jax.sharding.Mesh`` with one axis of ``len(devices)`` devices.

    Raises:
      ValueError: ``devices`` is empty.

    Example:
      >>> from advjax import parallel
      >>> mesh = parallel.make_mesh()
      >>> mesh.axis_names
      ('batch',)
      >>> mesh.size == len(jax.devices())
      True
      >>> parallel.make_mesh([])
      Traceback (most recent call last):
        ...
      ValueError: make_mesh needs at least one device.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device.")
    return Mesh(np.asarray(devices, dtype=object), (axis,), axis_types=(AxisType.Auto,))


def default_mesh() -> Mesh | None:
    """The mesh advjax's loops split batches over when none is given: every local device.

    ``None`` (run on the default device, as plain ``jax.jit`` does) when the
    default backend has one device, or when several processes share the job
    (they pass their meshes explicitly, with :func:`host_slice`). After
    :func:`use_cpu_devices` a CPU host has one device per core, so
    :func:`advjax.train.fit`, :func:`advjax.evaluate`,
    :func:`advjax.evaluation.autoattack` and the ``advjax`` command run
    data-parallel over every core without further changes.

    Returns:
      A one-axis ``Mesh`` over ``jax.local_devices()``, or ``None``.

    Example:
      >>> import jax
      >>> from advjax import parallel
      >>> mesh = parallel.default_mesh()
      >>> (mesh is None) == (jax.local_device_count() == 1)
      True
    """
    if jax.process_count() > 1 or jax.local_device_count() == 1:
        return None
    return make_mesh(jax.local_devices())


def default_batch_sharding() -> NamedSharding | None:
    """:func:`batch_sharding` of :func:`default_mesh`, or ``None`` on one device.

    What evaluation and AutoAttack split their batches with when given no
    sharding.

    Returns:
      A ``NamedSharding`` splitting the leading axis over every local device,
      or ``None``.

    Example:
      >>> import jax
      >>> from advjax import parallel
      >>> (parallel.default_batch_sharding() is None) == (jax.local_device_count() == 1)
      True
    """
    mesh = default_mesh()
    return None if mesh is None else batch_sharding(mesh)


def sub_mesh(mesh: Mesh, batch_size: int) -> Mesh:
    """The largest leading part of ``mesh`` whose device count divides ``batch_size``.

    A training batch cannot be padded without changing its loss (and its
    BatchNorm statistics), so a batch of 100 on 3 devices trains on 2.

    Args:
      mesh: a one-axis mesh, e.g. from :func:`make_mesh`.
      batch_size: the global batch size (``>= 1``).

    Raises:
      TypeError, ValueError: ``batch_size`` is not a positive integer.

    Returns:
      ``mesh`` itself when its size divides ``batch_size``, else a mesh over
      its first ``d`` devices, ``d`` the largest divisor of ``batch_size`` not
      above the device count.

    Example:
      >>> import jax
      >>> from advjax import parallel
      >>> parallel.sub_mesh(parallel.make_mesh(), 1).size
      1
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    devices = list(mesh.devices.flat)
    count = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if count == len(devices):
        return mesh
    return make_mesh(devices[:count], mesh.axis_names[0])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis of every array over all of the mesh's axes.

    Args:
      mesh: the mesh, usually from :func:`make_mesh`.

    Returns:
      A ``NamedSharding`` whose spec puts the leading axis on the mesh's axes
      and leaves the other axes whole.

    Example:
      >>> from advjax import parallel
      >>> tuple(parallel.batch_sharding(parallel.make_mesh()).spec)
      ('batch',)
    """
    names = tuple(mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(names[0] if len(names) == 1 else names))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (parameters, keys, scalars).

    Args:
      mesh: the mesh, usually from :func:`make_mesh`.

    Returns:
      A ``NamedSharding`` with an empty spec (nothing is split).

    Example:
      >>> from advjax import parallel
      >>> tuple(parallel.replicated(parallel.make_mesh()).spec)
      ()
    """
    return NamedSharding(mesh, PartitionSpec())


def batch_divisor(sharding: jax.sharding.Sharding) -> int:
    """How many pieces ``sharding`` cuts the leading axis into (1 if it is not split).

    Args:
      sharding: any ``jax.sharding.Sharding``; for shardings other than
        ``NamedSharding`` its device count is taken.

    Returns:
      The number of shards of the leading axis, so a batch size must be a
      multiple of it.

    Example:
      >>> from advjax import parallel
      >>> import jax
      >>> parallel.batch_divisor(parallel.batch_sharding(parallel.make_mesh())) == len(
      ...     jax.devices())
      True
      >>> parallel.batch_divisor(parallel.replicated(parallel.make_mesh()))
      1
    """
    if isinstance(sharding, NamedSharding):
        spec = tuple(sharding.spec)
        if not spec or spec[0] is None:
            return 1
        names = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
        return int(np.prod([sharding.mesh.shape[name] for name in names]))
    return int(sharding.num_devices)


def param_sharding(tree, mesh: Mesh, *, min_size: int = 2**16):
    """Per-leaf shardings that split large arrays over the mesh (ZeRO-3 / FSDP style).

    An array with at least ``min_size`` elements is split along its largest
    axis that the mesh size divides; everything else is replicated. The rule
    looks only at shapes, so optimizer moments get the same sharding as their
    parameters. XLA gathers each weight where a layer needs it.

    Args:
      tree: a pytree of arrays (parameters, or a whole ``TrainState``).
      mesh: the mesh; its first axis splits the parameters.
      min_size: arrays smaller than this stay replicated.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax import parallel
      >>> mesh = parallel.make_mesh()
      >>> tree = {"w": jnp.zeros((512, 256)), "b": jnp.zeros(256)}
      >>> tuple(parallel.param_sharding(tree, mesh, min_size=1024)["b"].spec)
      ()
      >>> tuple(parallel.param_sharding(tree, mesh, min_size=1024)["w"].spec) in [
      ...     (), ("batch", None), (None, "batch")]  # split only on more than one device
      True
    """
    axis = mesh.axis_names[0]
    size = mesh.shape[axis]

    def rule(leaf):
        shape = np.shape(leaf)
        if size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
            return replicated(mesh)
        candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % size == 0]
        if not candidates:
            return replicated(mesh)
        spec = [None] * len(shape)
        spec[int(candidates[0])] = axis
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(rule, tree)
