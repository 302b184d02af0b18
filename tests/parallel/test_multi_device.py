"""One CPU device and eight give the same attack, evaluation counts and training steps.

The eight-device half runs in a child process: ``XLA_FLAGS`` must hold
``--xla_force_host_platform_device_count=8`` before JAX starts, and this
process's JAX (imported by conftest) has already started with one device.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
from flax import serialization

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_PATH = Path(__file__).with_name("_workload.py")


def _load_workload():
    spec = importlib.util.spec_from_file_location("advjax_parallel_workload", WORKLOAD_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_and_eight_cpu_devices_agree(tmp_path):
    assert len(jax.devices()) == 1, "the reference half must run on one device"
    workload = _load_workload()
    params = workload.pretrained_params()
    params_path, out_path = tmp_path / "params.msgpack", tmp_path / "eight.npz"
    params_path.write_bytes(serialization.msgpack_serialize(params))
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = {
        **os.environ,
        "XLA_FLAGS": flags.strip(),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    child = subprocess.Popen(
        [sys.executable, str(WORKLOAD_PATH), str(params_path), str(out_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    one = workload.run(params, sharded=False)
    log, _ = child.communicate(timeout=300)
    assert child.returncode == 0, log
    eight = dict(np.load(out_path))

    assert int(one["devices"]) == 1
    assert int(eight["devices"]) == 8 and int(eight["attack_devices"]) == 8
    # The attack: same random starts, same steps, same adversarial examples.
    np.testing.assert_array_equal(one["x_adv"], eight["x_adv"])
    # The evaluation: exactly the same counts.
    assert int(one["clean_count"]) == int(eight["clean_count"])
    np.testing.assert_array_equal(one["robust_counts"], eight["robust_counts"])
    assert 0 < int(one["clean_count"]) and one["robust_counts"].max() > 0
    # Training: data parallel and parameter-sharded agree with one device up to
    # the order of the cross-device gradient sum.
    assert int(eight["dp_kernel_shards"]) == 8 and int(eight["dp_kernel_shard_rows"]) == 784
    assert int(eight["fsdp_kernel_shard_rows"]) == 784 // 8
    for key in one:
        if key.startswith(("dp_", "fsdp_")) and not key.endswith(("_shards", "_shard_rows")):
            np.testing.assert_allclose(one[key], eight[key], rtol=1e-4, atol=1e-5, err_msg=key)
