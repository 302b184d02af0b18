"""Square from its own start beside Square from APGD's closest point, near the boundary.

Why ``fast_autoattack`` starts Square from the point nearest the boundary that
its APGD stages found. For each model trained by a recipe (the runs of
``fast_eval.py``), on the first ``--n`` official MNIST test images at Linf eps
0.3: the APGD stages of ``fast_autoattack`` (APGD-CE, APGD-T towards MALT's
targets), then, on the ``--points`` still-robust points nearest the boundary,
``--own-runs`` Square runs from Square's own start (the stripes, as in
AutoAttack) and ``--closest-runs`` runs from APGD's closest point, each with
5,000 queries and its own seed. Printed per model: the breaks of each run, the
union of the own-start runs, and the points the own-start runs broke that no
run from the closest point did (with how many own-start runs broke each).

    python experiments/benchmarks/square_starts.py --runs-dir runs/fast_eval
        [--models fgsm_rs,trades,pgd_at] [--n 1000] [--points 160]
    python experiments/benchmarks/square_starts.py --tiny   # untrained weights, tiny settings
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
from _recipe_runs import train_missing
from fast_eval import MODELS, SHARED_DATA, _tiny_models

from advjax import data, evaluation, parallel
from advjax.attacks import square_from
from advjax.runs import load_run

EPS = 0.3


def _after_apgd(logits_fn, x, y, eps: float, steps: int):
    """The APGD stages of ``fast_autoattack``: (robust [N], margin [N], closest [N, ...])."""
    with tempfile.TemporaryDirectory() as state:
        result = evaluation.fast_autoattack(
            logits_fn, x, y, eps=eps, key=jax.random.key(0), steps=steps,
            boundary_share=0.0, probe_examples=0, state_dir=state,
        )  # fmt: skip
        with np.load(next(Path(state).glob("*.npz"))) as saved:
            return result.robust, saved["margin"], saved["closest"]


def _breaks(logits_fn, attack, x, y, start, use, seed: int) -> np.ndarray:
    x_adv = attack(x, y, start, use, jax.random.key(seed))
    return np.asarray(jax.numpy.argmax(logits_fn(x_adv), -1)) != y


def compare(name, logits_fn, x, y, *, points, own_runs, closest_runs, eps, steps, queries):
    robust, margin, closest = _after_apgd(logits_fn, x, y, eps, steps)
    rows = np.flatnonzero(robust)
    rows = rows[np.argsort(margin[rows], kind="stable")][:points]
    if not rows.size:
        print(f"{name:<18} no point left robust by the APGD stages: nothing to compare")
        return
    run = square_from(eps, queries=queries)
    attack = jax.jit(lambda x, y, start, use, key: run(logits_fn, x, y, start, use, key=key))
    xs, ys, starts = x[rows], y[rows], closest[rows]
    own = [
        _breaks(logits_fn, attack, xs, ys, starts, np.zeros(rows.size, bool), 10 + s)
        for s in range(own_runs)
    ]
    near = [
        _breaks(logits_fn, attack, xs, ys, starts, np.ones(rows.size, bool), 50 + s)
        for s in range(closest_runs)
    ]
    own_count = np.sum(own, 0)
    missed = np.flatnonzero((own_count > 0) & ~np.any(near, 0))
    print(
        f"{name:<18} {rows.size} points nearest the boundary of {int(robust.sum())} robust: "
        f"own start {[int(b.sum()) for b in own]} (union {int((own_count > 0).sum())}), "
        f"from APGD's closest point {[int(b.sum()) for b in near]} "
        f"(union {int(np.any(near, 0).sum())}); own-start breaks never made from the "
        f"closest point: {missed.size} (positions {missed.tolist()}, broken by "
        f"{own_count[missed].tolist()} of {own_runs} own-start runs)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs") / "fast_eval")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", default="fgsm_rs,trades,pgd_at")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--points", type=int, default=160)
    parser.add_argument("--own-runs", type=int, default=4)
    parser.add_argument("--closest-runs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="untrained weights, tiny settings")
    args = parser.parse_args(argv)
    parallel.use_cpu_devices(None)
    options = dict(points=args.points, own_runs=args.own_runs, closest_runs=args.closest_runs)
    if args.tiny:
        test = data.load_embedded_mnist("test")
        x, y = np.asarray(data.to_device(test.images[:16])), np.asarray(test.labels[:16])
        for name, (logits_fn, _, _) in _tiny_models().items():
            tiny = dict(points=8, eps=0.002, steps=3, queries=20)
            compare(name, logits_fn, x, y, **{**options, **tiny})
        return
    test = data.load_mnist("test", args.data_dir, download=False)
    x, y = np.asarray(data.to_device(test.images[: args.n])), np.asarray(test.labels[: args.n])
    for name in args.models.split(","):
        recipe, extra = MODELS[name]
        run = load_run(train_missing(args.runs_dir / name, recipe, args.data_dir, extra))
        compare(name, run.logits_fn, x, y, **options, eps=EPS, steps=100, queries=5000)


if __name__ == "__main__":
    sys.exit(main())
