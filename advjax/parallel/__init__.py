"""Scale-out: one code path for one device or many, and mixed-precision attacks.

A one-axis mesh over all devices splits the batch and replicates the model
(optionally splitting large parameters too); attacks, evaluation and training
steps take it as a parameter and give the same results on any device count.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import advjax
  >>> from advjax import parallel
  >>> mesh = parallel.make_mesh()                       # every device
  >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
  >>> attack = parallel.sharded_attack(advjax.pgd(eps=0.1, steps=3), mesh)
  >>> attack(logits_fn, jnp.full((4, 3), 0.5), jnp.zeros(4, jnp.int32),
  ...        key=jax.random.key(0)).shape
  (4, 3)
"""

from advjax.parallel._attack import pmap_attack, sharded_attack
from advjax.parallel._batch import padded_size, shard_batch
from advjax.parallel._cpu import available_cores, use_cpu_devices
from advjax.parallel._distributed import host_slice, initialize_distributed
from advjax.parallel._mesh import (
    batch_divisor,
    batch_sharding,
    default_batch_sharding,
    default_mesh,
    make_mesh,
    param_sharding,
    replicated,
    sub_mesh,
)
from advjax.parallel._precision import bf16_logits
from advjax.parallel._train import shard_train_state, sharded_step, state_sharding

__all__ = [
    "available_cores",
    "batch_divisor",
    "batch_sharding",
    "bf16_logits",
    "default_batch_sharding",
    "default_mesh",
    "host_slice",
    "initialize_distributed",
    "make_mesh",
    "padded_size",
    "param_sharding",
    "pmap_attack",
    "replicated",
    "shard_batch",
    "shard_train_state",
    "sharded_attack",
    "sharded_step",
    "state_sharding",
    "sub_mesh",
    "use_cpu_devices",
]
