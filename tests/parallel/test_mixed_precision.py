"""bf16 attacks measure the same robust accuracy as fp32 ones on the quick-start model.

Slow (three PGD-20 evaluations of 1,000 MNIST test images, ~2.5 min on a 2-core
CPU) and needs the quick-start run in ``$ADVJAX_QUICKSTART_RUN`` (default
``/tmp/qsfinal``, made by ``advjax quickstart --out /tmp/qsfinal``) and the full
MNIST test set in ``$ADVJAX_DATA`` (default ``../shared/data`` beside the checkout); skipped
otherwise. Run with ``pytest -m slow tests/parallel/test_mixed_precision.py -s``.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

import advjax
from advjax import data, parallel

RUN_DIR = Path(os.environ.get("ADVJAX_QUICKSTART_RUN", "/tmp/qsfinal"))
DATA_DIR = Path(
    os.environ.get("ADVJAX_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
EPSILONS = [0.1, 0.2, 0.3]
EXAMPLES = 1000


def _with_logits(logits_fn, make_attack):
    """``eps -> attack`` that attacks ``logits_fn`` whatever model evaluate hands it."""
    return lambda eps: lambda _, x, y, *, key: make_attack(eps)(logits_fn, x, y, key=key)


@pytest.mark.slow
def test_bf16_robust_accuracy_within_half_a_point_of_fp32():
    if not (RUN_DIR / "config.json").is_file():
        pytest.skip(f"no quick-start run in {RUN_DIR}")
    try:
        test_set = data.load_mnist("test", data_dir=DATA_DIR, download=False)
    except Exception as error:  # any missing-data error means skip
        pytest.skip(f"MNIST test set unavailable in {DATA_DIR}: {error}")
    run = advjax.load_run(RUN_DIR)
    x = np.asarray(data.to_device(test_set.images[:EXAMPLES]))
    y = test_set.labels[:EXAMPLES].astype(np.int32)
    bf16 = parallel.bf16_logits(run.model, run.variables)

    def make_pgd(eps):
        return advjax.pgd(eps, steps=20)

    settings = {
        "fp32": (run.logits_fn, make_pgd),
        "bf16 attack, fp32 model": (run.logits_fn, _with_logits(bf16, make_pgd)),
        "bf16 attack and model": (bf16, make_pgd),
    }
    robust = {}
    for name, (logits_fn, factory) in settings.items():
        report = advjax.evaluate(
            logits_fn,
            x,
            y,
            {"pgd": factory},
            EPSILONS,
            key=jax.random.key(0),
            batch_size=500,
            diagnostics=False,
        )
        robust[name] = 100 * np.asarray(report.attacks[0].robust_accuracy)
        print(f"{name}: clean {100 * report.clean_accuracy:.1f}, robust {robust[name]}")
    for name in settings:
        assert np.max(np.abs(robust[name] - robust["fp32"])) <= 0.5, (name, robust)
