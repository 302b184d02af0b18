"""AutoAttack against PGD on the quick start's PGD-trained MNIST model.

Shows (1) AutoAttack's robust accuracy is at most that under PGD-50 with 10
restarts, and (2) APGD-CE beats PGD at an equal number of iterations.

    advjax quickstart --out /tmp/qs          # a few minutes; or any run directory
    python experiments/autoattack_vs_pgd.py --run /tmp/qs [--n 500] [--eps 0.3]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import advjax
from advjax import attacks as A
from advjax import data
from advjax import evaluation as adv_eval


def robust_accuracy(logits_fn, attack, x, y, key, batch_size):
    run = jax.jit(lambda xb, yb, k: attack(logits_fn, xb, yb, key=k))
    correct = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = run(xb, yb, jax.random.fold_in(key, i))
        correct.append(np.asarray(jnp.argmax(logits_fn(x_adv), -1) == yb))
    return float(np.concatenate(correct).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/tmp/qs", help="a run directory (advjax quickstart)")
    parser.add_argument("--n", type=int, default=500, help="test images")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--iterations", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = advjax.load_run(args.run)
    test_set = data.load_embedded_mnist("test")
    x = np.asarray(data.to_device(test_set.images[: args.n]))
    y = test_set.labels[: args.n].astype(np.int32)
    key = jax.random.key(args.seed)
    logits_fn = run.logits_fn
    clean = float(np.mean(np.argmax(np.asarray(logits_fn(x)), -1) == y))
    results = {"clean": clean, "n": args.n, "eps": args.eps}
    print(f"clean accuracy: {100 * clean:.2f}% on {args.n} test images, eps={args.eps}")

    started = time.perf_counter()
    pgd_restarts = robust_accuracy(
        logits_fn, advjax.pgd(args.eps, steps=50, restarts=10), x, y, key, args.batch
    )
    results["pgd50x10"] = pgd_restarts
    print(
        f"PGD-50 x 10 restarts: {100 * pgd_restarts:.2f}% ({time.perf_counter() - started:.0f} s)"
    )

    print("equal iterations (1 run each; PGD step 2.5 eps / k, random start):")
    results["equal_iterations"] = {}
    for k in args.iterations:
        pgd_acc = robust_accuracy(logits_fn, advjax.pgd(args.eps, steps=k), x, y, key, args.batch)
        apgd_acc = robust_accuracy(logits_fn, A.apgd(args.eps, steps=k), x, y, key, args.batch)
        results["equal_iterations"][k] = {"pgd": pgd_acc, "apgd_ce": apgd_acc}
        print(f"  k={k:4d}: PGD {100 * pgd_acc:.2f}%   APGD-CE {100 * apgd_acc:.2f}%")

    started = time.perf_counter()
    aa = adv_eval.autoattack(
        logits_fn, x, y, eps=args.eps, key=key, batch_size=args.batch, state_dir=None
    )
    results["autoattack"] = aa.robust_accuracy
    results["autoattack_per_attack"] = aa.per_attack
    results["warnings"] = aa.warnings
    seconds = time.perf_counter() - started
    print(f"AutoAttack (standard): {100 * aa.robust_accuracy:.2f}% ({seconds:.0f} s)")
    for name, figures in aa.per_attack.items():
        print(
            f"  after {name:8s}: {100 * figures['robust_accuracy_after']:.2f}% "
            f"(broke {figures['broken']}, {figures['seconds']:.0f} s)"
        )
    for warning in aa.warnings:
        print(f"  WARNING: {warning}")
    verdict = aa.robust_accuracy <= pgd_restarts
    print(f"AutoAttack <= PGD-50x10: {verdict}")
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
