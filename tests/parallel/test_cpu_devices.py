"""use_cpu_devices: one XLA device per core, set before JAX starts; clear errors otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advjax import parallel

_CHILD = """
import json, jax, jax.numpy as jnp
from advjax import parallel
requested = parallel.use_cpu_devices(3)
import advjax
x = jnp.linspace(0.2, 0.8, 6 * 4).reshape(6, 4)
y = jnp.array([0, 1, 0, 1, 0, 1])
w = jnp.array([[1.0, -1.0], [0.5, 0.2], [-0.3, 0.4], [0.1, 0.9]])
attack = advjax.pgd(0.1, steps=5)
one = jax.jit(attack, static_argnums=0)(lambda v: v @ w, x, y, key=jax.random.key(0))
many = parallel.sharded_attack(attack, parallel.make_mesh())(
    lambda v: v @ w, x, y, key=jax.random.key(0))
print(json.dumps({"requested": requested, "devices": len(jax.devices("cpu")),
                  "shards": len(many.sharding.device_set),
                  "equal": bool(jnp.array_equal(one, many))}))
"""


def test_splits_the_cpu_before_jax_starts_and_sharded_attacks_match():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"requested": 3, "devices": 3, "shards": 3, "equal": True}


def test_too_late_or_bad_counts_raise_clear_errors():
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # the test process's backend is running
    with pytest.raises(RuntimeError, match="right after `import jax`"):
        parallel.use_cpu_devices(2)
    with pytest.raises(ValueError, match="num_devices must be >= 1"):
        parallel.use_cpu_devices(0)
    with pytest.raises(TypeError, match="num_devices must be an integer"):
        parallel.use_cpu_devices(2.0)
    assert parallel.available_cores() >= 1
