"""A CPU speed workaround for XLA's loop execution, applied by advjax's entry points.

On CPU, XLA's default ("thunk") runtime runs the body of a ``while`` loop
without the intra-op parallelism it gives the same computation outside a loop:
measured here (jaxlib 0.10.2, 2 cores), a ``lax.fori_loop`` of 10 input
gradients of the Madry CNN took 1.8x as long as 10 separate gradient calls.
Every attack loop pays this. ``--xla_cpu_use_thunk_runtime=false`` removes the
gap, but the flag is deprecated and a jaxlib that no longer knows it aborts at
start-up, so it is only set after a child process has shown that it is
accepted. Library code never calls this; the ``advjax`` command, the
benchmarks and the test suite do, before JAX starts its backend.
"""

from __future__ import annotations

import os
import subprocess
import sys

FLAG = "--xla_cpu_use_thunk_runtime=false"
OPT_OUT = "ADVJAX_KEEP_XLA_FLAGS"
_PROBE = "import jax, jax.numpy as jnp; jnp.zeros(1).block_until_ready()"


def _flag_accepted(env: dict) -> bool:
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env={**env, "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def use_fast_cpu_loops() -> bool:
    """Adds :data:`FLAG` to ``XLA_FLAGS`` when it is safe; returns whether it is in effect.

    Does nothing when ``ADVJAX_KEEP_XLA_FLAGS`` is set, when ``XLA_FLAGS``
    already mentions the thunk runtime, or when the installed jaxlib rejects
    the flag. Must run before JAX initialises its backends.

    Example:
      >>> from advjax.backend import use_fast_cpu_loops
      >>> isinstance(use_fast_cpu_loops(), bool)
      True
    """
    current = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_thunk_runtime" in current:
        return FLAG in current
    if os.environ.get(OPT_OUT):
        return False
    candidate = f"{current} {FLAG}".strip()
    if not _flag_accepted({**os.environ, "XLA_FLAGS": candidate}):
        return False
    os.environ["XLA_FLAGS"] = candidate
    return True
