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
import pytest
from flax import serialization

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_PATH = Path(__file__).with_name("_workload.py")


def _load_workload():
    spec = importlib.util.spec_from_file_location("advjax_parallel_workload", WORKLOAD_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workload():
    return _load_workload()


@pytest.fixture(scope="module")
def params(workload):
    return workload.pretrained_params()


@pytest.fixture(scope="module")
def one_device(workload, params):
    """The workload on this process's single device: plain ``jax.jit`` code."""
    assert len(jax.devices()) == 1, "the reference half must run on one device"
    return {
        **workload.run(params, sharded=False),
        **{f"default_{k}": v for k, v in workload.defaults(params).items()},
    }


def _child(params, tmp_path, devices: int, modes: str) -> dict[str, np.ndarray]:
    params_path, out_path = tmp_path / "params.msgpack", tmp_path / f"{devices}.npz"
    params_path.write_bytes(serialization.msgpack_serialize(params))
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {
        **os.environ,
        "XLA_FLAGS": flags.strip(),
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    done = subprocess.run(
        [sys.executable, str(WORKLOAD_PATH), str(params_path), str(out_path), modes],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return dict(np.load(out_path))


def _check_defaults(one, many, devices: int, train_devices: int) -> None:
    """fit, evaluate and autoattack given no mesh: same counts, same points, close weights."""
    assert int(one["default_default_mesh_size"]) == 0
    assert int(many["default_default_mesh_size"]) == devices
    assert int(one["default_fit_devices"]) == 1
    assert int(many["default_fit_devices"]) == train_devices
    assert int(one["default_clean_count"]) == int(many["default_clean_count"])
    np.testing.assert_array_equal(one["default_robust_counts"], many["default_robust_counts"])
    np.testing.assert_array_equal(one["default_aa_robust"], many["default_aa_robust"])
    np.testing.assert_array_equal(one["default_aa_x_adv"], many["default_aa_x_adv"])
    assert one["default_robust_counts"].max() > 0 and not one["default_aa_robust"].all()
    for key in one:
        if key.startswith("default_fit_param"):
            np.testing.assert_allclose(one[key], many[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_one_and_eight_cpu_devices_agree(one_device, params, tmp_path):
    one, eight = one_device, _child(params, tmp_path, 8, "sharded,defaults")

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
    _check_defaults(one, eight, devices=8, train_devices=8)


@pytest.mark.parametrize("devices, train_devices", [(2, 2), (3, 2)])
def test_defaults_split_over_two_and_three_devices(
    one_device, params, tmp_path, devices, train_devices
):
    """Three devices: evaluation pads each batch of 16 to 18; training runs on 2 (16 = 2 x 8)."""
    many = _child(params, tmp_path, devices, "defaults")
    _check_defaults(one_device, many, devices, train_devices)
