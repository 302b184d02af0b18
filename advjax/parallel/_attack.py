"""Running any attack over a mesh (``jit`` with shardings) or with ``pmap``."""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh

from advjax.attacks import Attack
from advjax.parallel._batch import shard_batch
from advjax.parallel._mesh import batch_sharding, replicated


def _local_rows(array: jax.Array) -> np.ndarray:
    """The rows of a batch-sharded global array that live on this process, in order."""
    shards = {shard.index[0].start or 0: shard.data for shard in array.addressable_shards}
    return np.concatenate([np.asarray(shards[start]) for start in sorted(shards)])


def sharded_attack(attack: Attack, mesh: Mesh) -> Attack:
    """Compiles ``attack`` with its batch split over ``mesh`` and the key replicated.

    The model (closed over by ``logits_fn``) is replicated; every device
    attacks its slice of the batch, and the attack's own per-example
    bookkeeping (best iterate, restarts, done masks) needs no communication.
    A batch whose size the device count does not divide is padded with copies
    of its first example and the padding is cut off again. With several
    processes (see :func:`initialize_distributed`) each passes its own share
    of the batch (:func:`host_slice`) and gets back its own rows (numpy).

    Random starts do not depend on the sharding: with JAX's default
    partitionable Threefry, the noise an attack draws for example ``i`` is the
    same on one device or many (and with or without padding), so the result
    equals ``jax.jit(attack, static_argnums=0)`` on one device up to the
    floating-point order of the model's own reductions: bit-equal in the tests
    of an MLP on 1 versus 8 CPU devices, while a convolution's input gradient
    can change in its last bit with the per-device batch size, which flips a
    sign step on a few examples (4 of 500 for PGD-20 on the fast-AT MNIST net,
    with the same robust verdicts; docs/notebooks/06_scaling_out).

    Args:
      attack: ``attack(logits_fn, x, y, *, key) -> x_adv`` that keeps examples
        independent (every advjax attack does, except the batch-wide
        :func:`advjax.attacks.universal_perturbation`, whose sum over the batch
        XLA then reduces across devices).
      mesh: from :func:`make_mesh`.

    Returns:
      ``attack(logits_fn, x, y, *, key) -> x_adv``, compiled once per
      ``logits_fn`` (a static argument, as with ``jax.jit``); ``x_adv`` is
      sharded like the batch when the device count divides it, and replicated
      when the batch was padded (the padding is cut off after the attack).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax import parallel
      >>> w = jnp.ones((4, 3))
      >>> logits_fn = lambda x: x @ w
      >>> attack = parallel.sharded_attack(advjax.pgd(eps=0.1, steps=5), parallel.make_mesh())
      >>> x_adv = attack(logits_fn, jnp.full((10, 4), 0.5), jnp.zeros(10, jnp.int32),
      ...                key=jax.random.key(0))
      >>> x_adv.shape
      (10, 4)
    """
    data = batch_sharding(mesh)

    @functools.partial(
        jax.jit,
        static_argnums=0,
        in_shardings=(data, data, replicated(mesh)),
        out_shardings=data,
    )
    def run(logits_fn, x, y, key):
        return attack(logits_fn, x, y, key=key)

    def sharded(logits_fn, x, y, *, key):
        n = x.shape[0]
        (x_padded, y_padded), _ = shard_batch((x, y), data)
        x_adv = run(logits_fn, x_padded, y_padded, key)
        if jax.process_count() > 1:  # this process's rows, in order, on the host
            return _local_rows(x_adv)[:n]
        return x_adv if x_adv.shape[0] == n else x_adv[:n]

    return sharded


def pmap_attack(attack: Attack, *, axis_name: str = "batch", devices=None) -> Attack:
    """``jax.pmap`` version of ``attack`` for code whose batches are ``[D, B, ...]``.

    Device ``d`` attacks ``x[d]`` with the key ``fold_in(key, d)``, so random
    starts differ between devices (they would repeat otherwise). The results
    are therefore as strong as, but not equal to, a single-device call; for
    results that do not depend on the device count use :func:`sharded_attack`.

    Args:
      attack: ``attack(logits_fn, x, y, *, key) -> x_adv``.
      axis_name: the pmap axis name.
      devices: the devices to map over (default: all local devices).

    Returns:
      ``attack(logits_fn, x[D, B, ...], y[D, B], *, key) -> x_adv[D, B, ...]``
      where ``D`` is the device count.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax import parallel
      >>> logits_fn = lambda x: x @ jnp.ones((4, 3))
      >>> d = jax.local_device_count()
      >>> attack = parallel.pmap_attack(advjax.pgd(eps=0.1, steps=3))
      >>> attack(logits_fn, jnp.full((d, 2, 4), 0.5), jnp.zeros((d, 2), jnp.int32),
      ...        key=jax.random.key(0)).shape == (d, 2, 4)
      True
    """

    def per_device(logits_fn, x, y, key):
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        return attack(logits_fn, x, y, key=key)

    mapped = jax.pmap(
        per_device,
        axis_name=axis_name,
        in_axes=(None, 0, 0, None),
        static_broadcasted_argnums=0,
        devices=devices,
    )

    def pmapped(logits_fn, x, y, *, key):
        return mapped(logits_fn, x, y, key)

    return pmapped
