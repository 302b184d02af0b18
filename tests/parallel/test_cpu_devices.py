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


def _without_device_count(environ):
    """The environment for a child that must split the CPU itself: no device-count flag."""
    flags = [f for f in environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    return {**environ, "XLA_FLAGS": " ".join(flags)}


def test_splits_the_cpu_before_jax_starts_and_sharded_attacks_match():
    env = _without_device_count(os.environ)
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


def test_the_command_runs_data_parallel_over_the_requested_cpu_devices(tmp_path):
    """Three devices: training batches of 100 go to 2 of them, evaluation pads to 3."""
    env = _without_device_count(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp_path / "run"
    argv = ["quickstart", "--cpu-devices", "3", "--epochs", "1", "--train-steps", "1"]
    argv += ["--eval-examples", "50", "--eval-epsilons", "0.3", "--eval-steps", "2"]
    argv += ["--eval-restarts", "1", "--no-progress", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "advjax", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data-parallel over 3 CPU devices" in done.stdout
    assert json.loads((out / "summary.json").read_text())["devices"] == 3


def test_a_device_count_the_running_process_cannot_take_is_an_error(capsys):
    import jax.numpy as jnp

    from advjax import cli

    jnp.zeros(1).block_until_ready()  # JAX has started with one CPU device
    assert cli.main(["quickstart", "--cpu-devices", "3", "--epochs", "1"]) == cli.EXIT_ERROR
    assert "--cpu-devices" in capsys.readouterr().err
    assert cli.main(["quickstart", "--cpu-devices", "0"]) == cli.EXIT_ERROR
    assert "num_devices must be >= 1" in capsys.readouterr().err
