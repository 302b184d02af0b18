"""Randomized smoothing on MNIST (Cohen et al., 2019) on the shared 5k training set.

Trains ``--model`` with Gaussian noise augmentation (``--sigma``), then runs
CERTIFY (``n0`` selection samples, ``n`` estimation samples, level ``alpha``) on
the first ``--n-certify`` test images and prints the certified L2 accuracy at
several radii (the fraction correctly classified with a radius at least r).

    python experiments/smoothing_mnist.py --sigma 0.25 --epochs 10 --n-certify 100 --n 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _certified_common import load_data, train_loop  # noqa: E402

from advjax import models  # noqa: E402
from advjax.certify import certified_accuracy_at_radii, smooth_certify  # noqa: E402
from advjax.train import gaussian_noise_training  # noqa: E402


def main(argv=None) -> None:
    """Parses flags, trains, certifies."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="fast_mnist")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-certify", type=int, default=100)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--radii", default="0,0.25,0.5,0.75,1.0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    train_set, x_test, y_test = load_data()
    model, variables, seconds = train_loop(
        args.model,
        gaussian_noise_training(args.sigma),
        train_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    print(f"training time: {seconds:.0f} s", flush=True)
    logits_fn = models.eval_logits_fn(model, variables)
    started = time.perf_counter()
    preds, radii = [], []
    key = jax.random.key(args.seed + 3)
    for i in range(args.n_certify):
        c, r = smooth_certify(
            logits_fn,
            x_test[i],
            sigma=args.sigma,
            n0=args.n0,
            n=args.n,
            alpha=args.alpha,
            key=jax.random.fold_in(key, i),
            batch_size=min(args.n, 1000),
        )
        preds.append(c)
        radii.append(r)
    labels = y_test[: args.n_certify]
    thresholds = [float(r) for r in args.radii.split(",")]
    acc = certified_accuracy_at_radii(np.array(preds), np.array(radii), labels, thresholds)
    seconds_cert = time.perf_counter() - started
    lines = ["| L2 radius | certified accuracy |", "|---|---|"]
    lines += [f"| {t:g} | {100 * a:.1f}% |" for t, a in zip(thresholds, acc, strict=True)]
    print("\n".join(lines))
    print(f"certify time: {seconds_cert:.0f} s for {args.n_certify} images (n={args.n})")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "sigma": args.sigma,
            "n": args.n,
            "alpha": args.alpha,
            "radii": thresholds,
            "certified_accuracy": [float(a) for a in acc],
            "train_seconds": seconds,
            "certify_seconds": seconds_cert,
        }
        (out / "smoothing.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
