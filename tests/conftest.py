"""Fixtures shared across the test suite: a small MNIST model trained once per session."""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from advjax import data, models, train

_CACHE_VARIABLE = "ADVJAX_TEST_COMPILATION_CACHE"
_FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
# Newer XLA:CPU only; each is passed only when the installed jaxlib knows it (XLA aborts
# on an unknown flag).
_FAST_COMPILE_OPTIONAL_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)


def pytest_configure(config):
    """Cheaper compilation for the whole session: most of the suite's time is XLA compiling."""
    if "not slow" in (config.getoption("markexpr") or ""):  # the default tier
        _compile_quickly()
    _share_one_compilation_cache(config)


def pytest_unconfigure(config):
    owned = getattr(config, "advjax_owned_cache", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
        del os.environ[_CACHE_VARIABLE]


def _compile_quickly():
    """Compiles every test program the quick way (XLA's own HLO passes still run).

    XLA:CPU compiles hundreds of small programs once each in this suite, while the tests
    check what programs compute, not how fast their machine code runs. So the default tier
    turns LLVM's optimisation off, emits fused loops with XLA:CPU's older elemental
    emitter instead of the MLIR fusion emitters, and compiles each program in one piece
    (no parallel code generation: the xdist workers already use every core). Measured on
    the 2-core development machine (2026-12-03): one jitted Square on a linear model
    compiled in 0.74 s -> 0.28 s, and the fuzz, recipe and evaluation tests took
    209 s -> 98 s. Set before any backend starts (JAX reads
    ``XLA_FLAGS`` then), so the xdist workers and child processes inherit it. The default
    tier only: ``-m slow`` (end-to-end runs, benchmarks that time compiled code) and
    ``ADVJAX_TEST_FULL_OPTIMIZATION=1`` keep XLA's default.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("ADVJAX_TEST_FULL_OPTIMIZATION") == "1" or "optimization_level" in flags:
        return
    known = [f for f in _FAST_COMPILE_OPTIONAL_FLAGS if _xla_knows(f[2:].split("=")[0])]
    os.environ["XLA_FLAGS"] = " ".join([flags, _FAST_COMPILE_FLAG, *known]).strip()


def _xla_knows(flag_name: str) -> bool:
    """Whether the installed jaxlib's XLA has a flag named ``flag_name`` (its binary names it)."""
    import jaxlib

    needle = flag_name.encode()
    for library in Path(jaxlib.__file__).parent.rglob("*.so"):
        if library.stat().st_size < 10_000_000:  # XLA is in the one large library
            continue
        with open(library, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(needle) >= 0:
                return True
    return False


def _share_one_compilation_cache(config):
    """One persistent XLA compilation cache per session, shared by the xdist workers.

    A program that both workers (or two tests through different Python closures) compile
    is compiled once and loaded from disk after that. The cache starts empty in every
    session, so no result depends on an earlier run; ``ADVJAX_TEST_COMPILATION_CACHE=off``
    turns it off.
    """
    if os.environ.get(_CACHE_VARIABLE) == "off":
        return
    if _CACHE_VARIABLE not in os.environ:  # the controller; workers inherit the variable
        os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="advjax-tests-xla-")
        config.advjax_owned_cache = os.environ[_CACHE_VARIABLE]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    # Programs that compile in under 0.1 s (single eager operations, thousands of them)
    # cost more to serialise and write than to compile again in the other worker.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


@pytest.fixture(scope="session")
def mnist_test_batch():
    """256 embedded MNIST test images in [0, 1] and their labels (numpy)."""
    test_set = data.load_embedded_mnist("test")
    x = np.asarray(data.to_device(test_set.images[:256]))
    return x, test_set.labels[:256].astype(np.int32)


@pytest.fixture(scope="session")
def trained_mnist():
    """A FastMNISTNet trained normally (no defense) for 2 epochs: ~97% clean accuracy.

    Returns ``(logits_fn, variables, model)``.
    """
    train_set = data.load_embedded_mnist("train")
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
    )
    result = train.fit(
        state,
        train_set,
        train.make_step(train.standard()),
        epochs=2,
        batch_size=50,
        key=jax.random.key(1),
        progress=False,
    )
    trained = result.state.variables()
    return models.eval_logits_fn(model, trained), trained, model
