"""Two processes on localhost (2 CPU devices each) act as two hosts of one mesh.

Each starts with ``initialize_distributed``, takes its ``host_slice`` of the
batch, attacks it with ``sharded_attack`` and makes one ``sharded_step``
(gradients all-reduced across the processes with gloo); both must match one
device. Slow: two extra JAX processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_multi_host_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_device(tmp_path):
    port = str(_free_port())
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), port, str(outs[i])],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log
    for i, path in enumerate(outs):
        result = np.load(path)
        assert (int(result["index"]), int(result["count"]), int(result["devices"])) == (i, 2, 4)
        assert result["x_adv"].shape == (4, 4, 4, 1)
        np.testing.assert_array_equal(result["x_adv"], result["reference"])
        np.testing.assert_allclose(
            result["kernel"], result["reference_kernel"], rtol=1e-5, atol=1e-6
        )
