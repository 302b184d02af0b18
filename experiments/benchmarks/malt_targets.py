"""How many MALT targets APGD-T needs: the APGD stages of ``fast_autoattack`` at several caps.

For each model trained by a recipe (the runs of ``fast_eval.py``), on the first
``--n`` official MNIST test images at Linf eps 0.3: APGD-CE, then APGD-T
towards MALT's targets (reach 1.75) capped at each of ``--caps`` classes per
point, Square and the probe switched off. Printed per model and cap: the points
APGD-T broke, its runs and seconds, and the points the largest cap broke that
this one left robust.

    python experiments/benchmarks/malt_targets.py --runs-dir runs/fast_eval
        [--models fgsm_rs,trades,pgd_at] [--caps 9,3,2,1]
    python experiments/benchmarks/malt_targets.py --tiny   # untrained weights, tiny settings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
from _recipe_runs import train_missing
from fast_eval import MODELS, SHARED_DATA, _tiny_models

from advjax import data, evaluation, parallel
from advjax.runs import load_run

EPS = 0.3


def compare(name, logits_fn, x, y, caps, *, eps, steps):
    robust = {}
    for cap in caps:
        result = evaluation.fast_autoattack(
            logits_fn, x, y, eps=eps, key=jax.random.key(0), steps=steps, max_targets=cap,
            boundary_share=0.0, probe_examples=0,
        )  # fmt: skip
        stage = result.per_attack["apgd-t"]
        robust[cap] = result.robust
        missed = int((~robust[caps[0]] & result.robust).sum()) if cap != caps[0] else 0
        print(
            f"{name:<18} at most {cap} targets: APGD-T broke {stage['broken']} "
            f"({stage['runs']} runs, {stage['mean_targets']:.2f} targets per point, "
            f"{stage['seconds']:.1f} s); broken with {caps[0]} but not with {cap}: {missed}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs") / "fast_eval")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", default="fgsm_rs,trades,pgd_at")
    parser.add_argument("--caps", default="9,3,2,1", help="largest first")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--tiny", action="store_true", help="untrained weights, tiny settings")
    args = parser.parse_args(argv)
    parallel.use_cpu_devices(None)
    caps = [int(c) for c in args.caps.split(",")]
    if args.tiny:
        test = data.load_embedded_mnist("test")
        x, y = np.asarray(data.to_device(test.images[:16])), np.asarray(test.labels[:16])
        for name, (logits_fn, _, _) in _tiny_models().items():
            compare(name, logits_fn, x, y, caps, eps=0.002, steps=3)
        return
    test = data.load_mnist("test", args.data_dir, download=False)
    x, y = np.asarray(data.to_device(test.images[: args.n])), np.asarray(test.labels[: args.n])
    for name in args.models.split(","):
        recipe, extra = MODELS[name]
        run = load_run(train_missing(args.runs_dir / name, recipe, args.data_dir, extra))
        compare(name, run.logits_fn, x, y, caps, eps=EPS, steps=100)


if __name__ == "__main__":
    sys.exit(main())
