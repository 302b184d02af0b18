"""Strength of every attack on an undefended MNIST model, with the papers' defaults.

Trains FastMNISTNet normally (3 epochs on the 5k shared training images, Adam
1e-3) unless ``--run`` names a run directory, then on the first ``--n`` official
test images reports, per attack:

* untargeted attacks: robust accuracy at Linf eps 0.3, L2 eps ``--l2-eps``
  (default 3), L1 eps ``--l1-eps`` (default 20);
* targeted attacks (runner-up class, or a random class): the share of points
  classified as their target;
* minimum-norm attacks (FAB, DDN, C&W, DeepFool): the median norm of their
  perturbations on the correctly classified points (infinite where they fail),
  beside the median of the smallest budget at which PGD-50 breaks each point,
  found by a per-point bisection over eps (``--bisections`` rounds).

C&W (9 rounds of the search over c x 1,000 Adam steps) runs on the first
``--cw-n`` images only: its untargeted row counts a point as broken when the
minimum-norm run fooled it within the L2 budget.

Black-box attacks (Square, HopSkipJump, one-pixel) and the universal
perturbation are reported with their query counts; they are not white-box
attacks and have no bar to meet.

    python experiments/attack_strength_mnist.py [--n 500] [--out /tmp/attack_strength]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _shared_data import SHARED_DATA  # noqa: E402
from defenses_mnist import train_undefended  # noqa: E402

import advjax  # noqa: E402
from advjax import attacks as A  # noqa: E402
from advjax import data, models  # noqa: E402
from advjax.runs import load_run  # noqa: E402

DATA_DIR = SHARED_DATA


def undefended_model(epochs: int, seed: int):
    """A logits function of FastMNISTNet trained normally on the 5k shared images."""
    model, variables = train_undefended(epochs, seed)
    return models.eval_logits_fn(model, variables)


def run_batched(attack, logits_fn, x, y, key, batch: int):
    """``attack`` over ``x`` in batches; returns the adversarial inputs (and any extras)."""
    run = jax.jit(attack, static_argnums=0)
    outs = [
        run(logits_fn, x[i : i + batch], y[i : i + batch], key=jax.random.fold_in(key, i))
        for i in range(0, len(x), batch)
    ]
    if isinstance(outs[0], tuple):
        return tuple(jnp.concatenate(parts) for parts in zip(*outs, strict=True))
    return jnp.concatenate(outs)


def predictions(logits_fn, x, batch: int = 1000) -> np.ndarray:
    return np.concatenate(
        [np.asarray(jnp.argmax(logits_fn(x[i : i + batch]), -1)) for i in range(0, len(x), batch)]
    )


def pgd_min_budget(logits_fn, x, y, norm: str, high: float, rounds: int, key) -> np.ndarray:
    """Per point, the smallest budget (to ``high / 2**rounds``) at which PGD-50 breaks it.

    A bisection on a per-example budget: every round runs one PGD-50 with each
    point's midpoint and halves its interval. Points PGD cannot break at ``high``
    get ``inf``.
    """
    n = len(y)
    low_b, high_b = np.zeros(n), np.full(n, high)
    broken_at_high = predictions(logits_fn, _pgd_at(logits_fn, x, y, high_b, norm, key)) != y
    for r in range(rounds):
        mid = (low_b + high_b) / 2
        x_adv = _pgd_at(logits_fn, x, y, mid, norm, jax.random.fold_in(key, r + 1))
        broken = predictions(logits_fn, x_adv) != y
        high_b = np.where(broken, mid, high_b)
        low_b = np.where(broken, low_b, mid)
    return np.where(broken_at_high, high_b, np.inf)


def _pgd_at(logits_fn, x, y, eps: np.ndarray, norm: str, key):
    eps = jnp.asarray(eps, jnp.float32)

    @jax.jit
    def run(xb, yb, eb, k):
        return advjax.pgd(eb, steps=50, norm=norm, step_size=2.5 * eb / 50)(
            logits_fn, xb, yb, key=k
        )

    return jnp.concatenate(
        [
            run(x[i : i + 500], y[i : i + 500], eps[i : i + 500], jax.random.fold_in(key, i))
            for i in range(0, len(y), 500)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a run directory's model instead")
    parser.add_argument("--n", type=int, default=500, help="test images")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--l2-eps", type=float, default=3.0)
    parser.add_argument("--l1-eps", type=float, default=20.0)
    parser.add_argument("--bisections", type=int, default=8)
    parser.add_argument("--cw-n", type=int, default=100, help="images for C&W")
    parser.add_argument("--min-norm-n", type=int, default=None, help="images for min-norm")
    parser.add_argument("--min-norm-attacks", nargs="*", default=None, help="a subset by name")
    parser.add_argument(
        "--sections",
        default="untargeted,targeted,min_norm,black_box",
        help="comma-separated subset of untargeted,targeted,min_norm,black_box",
    )
    parser.add_argument("--black-box-n", type=int, default=100, help="images for HSJ, one-pixel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for attack_strength.json")
    args = parser.parse_args()

    logits_fn = load_run(args.run).logits_fn if args.run else undefended_model(3, args.seed)
    test = data.load_mnist("test", data_dir=DATA_DIR, download=False)
    x = data.to_device(test.images[: args.n])
    y = jnp.asarray(test.labels[: args.n], jnp.int32)
    y_np = np.asarray(y)
    correct = predictions(logits_fn, x) == y_np
    key = jax.random.key(args.seed + 3)
    runner_up = A.choose_targets(logits_fn(x), y, "second", key)
    random_targets = A.choose_targets(logits_fn(x), y, "random", key)
    print(f"clean accuracy {100 * correct.mean():.2f}% on {args.n} test images", flush=True)
    results = {"n": args.n, "clean_acc": round(100 * float(correct.mean()), 2)}

    linf, l2, l1 = 0.3, args.l2_eps, args.l1_eps
    sections = set(args.sections.split(","))
    unknown = sections - {"untargeted", "targeted", "min_norm", "black_box"}
    if unknown:
        parser.error(f"unknown --sections {sorted(unknown)}")
    results["untargeted"] = {}
    untargeted = {
        "FGSM linf": (A.fgsm(linf), "linf", linf),
        "BIM linf": (A.bim(linf), "linf", linf),
        "PGD-40 linf": (A.pgd(linf, steps=40, step_size=0.01), "linf", linf),
        "MI-FGSM linf": (A.mifgsm(linf), "linf", linf),
        "APGD-CE linf": (A.apgd(linf), "linf", linf),
        "APGD-DLR linf": (A.apgd(linf, loss="dlr"), "linf", linf),
        "APGD-T linf": (A.apgd_t(linf), "linf", linf),
        "FAB-T linf": (A.fab(linf), "linf", linf),
        "DeepFool linf": (A.deepfool(linf, norm="linf"), "linf", linf),
        "PGD-100 l2": (A.pgd(l2, steps=100, norm="l2"), "l2", l2),
        "APGD-CE l2": (A.apgd(l2, norm="l2"), "l2", l2),
        "APGD-T l2": (A.apgd_t(l2, norm="l2"), "l2", l2),
        "FAB-T l2": (A.fab(l2, norm="l2"), "l2", l2),
        "DDN l2": (A.ddn(l2), "l2", l2),
        "DeepFool l2": (A.deepfool(l2), "l2", l2),
        "APGD-CE l1": (A.apgd(l1, norm="l1"), "l1", l1),
    }
    if "untargeted" not in sections:
        untargeted = {}
    rows = {}
    for name, (attack, norm, eps) in untargeted.items():
        started = time.perf_counter()
        x_adv = run_batched(attack, logits_fn, x, y, key, args.batch)
        size = float(A.get_threat_model(norm).norm(x_adv - x).max())
        inside = size <= eps * (1 + 1e-5) and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        acc = float(np.mean(predictions(logits_fn, x_adv) == y_np))
        rows[name] = {"robust_acc": round(100 * acc, 2), "eps": eps, "in_threat_model": inside}
        seconds = time.perf_counter() - started
        print(f"{name:16s} eps {eps:5g}: robust {100 * acc:6.2f}%  {seconds:6.1f} s", flush=True)
    results["untargeted"] = rows

    targeted = {
        "APGD linf -> runner-up": (A.apgd(linf, targeted=True), runner_up),
        "APGD linf -> random": (A.apgd(linf, targeted=True), random_targets),
        "PGD-100 linf -> random": (A.pgd(linf, steps=100, targeted=True), random_targets),
        "C&W l2 -> random": (A.cw_l2(targeted=True), random_targets),
        "JSMA (L0, gamma 14.5%) -> runner-up": (A.jsma(), runner_up),
        "JSMA (L0, gamma 14.5%) -> random": (A.jsma(), random_targets),
    }
    if "targeted" not in sections:
        targeted = {}
    rows = {}
    for name, (attack, targets) in targeted.items():
        started = time.perf_counter()
        m = args.cw_n if name.startswith("C&W") else args.n
        x_adv = run_batched(attack, logits_fn, x[:m], targets[:m], key, args.batch)
        hit = float(np.mean(predictions(logits_fn, x_adv) == np.asarray(targets[:m])))
        rows[name] = {"target_reached": round(100 * hit, 2), "n": m}
        seconds = time.perf_counter() - started
        print(f"{name:34s}: target reached {100 * hit:6.2f}%  {seconds:6.1f} s", flush=True)
    results["targeted_success"] = rows

    if "min_norm" in sections:
        min_norm_section(args, logits_fn, x[: args.min_norm_n], y[: args.min_norm_n], key, results)
    if "black_box" in sections:
        black_box_section(args, logits_fn, x, y, key, results)
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "attack_strength.json").write_text(json.dumps(results, indent=2) + "\n")


def min_norm_section(args, logits_fn, x, y, key, results) -> None:
    """Median norms of the minimum-norm attacks beside PGD-50's bisected budgets."""
    y_np = np.asarray(y)
    correct = predictions(logits_fn, x) == y_np
    l2 = args.l2_eps
    rounds = args.bisections
    pgd_linf = pgd_min_budget(logits_fn, x, y, "linf", 0.5, rounds, key)[correct]
    pgd_l2 = pgd_min_budget(logits_fn, x, y, "l2", 6.0, rounds, key)[correct]
    min_norm = {
        "FAB-T linf": (A.fab(), "linf", pgd_linf),
        "FAB-T l2": (A.fab(norm="l2"), "l2", pgd_l2),
        "DDN l2": (A.ddn(), "l2", pgd_l2),
        "C&W l2": (A.cw_l2(), "l2", pgd_l2),
        "DeepFool l2": (A.deepfool(), "l2", pgd_l2),
        "DeepFool linf": (A.deepfool(norm="linf"), "linf", pgd_linf),
    }
    if args.min_norm_attacks:
        min_norm = {k: v for k, v in min_norm.items() if k in args.min_norm_attacks}
    rows = {}
    for name, (attack, norm, pgd_budgets) in min_norm.items():
        m = args.cw_n if name.startswith("C&W") else len(y)
        x_adv = run_batched(attack, logits_fn, x[:m], y[:m], key, args.batch)
        fooled = predictions(logits_fn, x_adv) != y_np[:m]
        norms = np.asarray(A.get_threat_model(norm).norm(x_adv - x[:m]))
        median = float(np.median(np.where(fooled, norms, np.inf)[correct[:m]]))
        pgd_median = float(np.median(pgd_budgets[: int(correct[:m].sum())]))
        rows[name] = {"median_norm": median, "pgd_bisection_median": pgd_median, "n": m}
        print(f"{name:14s}: median {norm} {median:.4f}  (PGD-50 bisection {pgd_median:.4f}, {m})")
        if name == "C&W l2":
            acc = float(np.mean(~(fooled & (norms <= l2 * (1 + 1e-5)))))
            results["untargeted"]["C&W l2"] = {"robust_acc": round(100 * acc, 2), "eps": l2, "n": m}
            print(f"C&W l2 eps {l2:g}: robust {100 * acc:.2f}% ({m} images)")
    results["min_norm"] = rows


def black_box_section(args, logits_fn, x, y, key, results) -> None:
    """Square, HopSkipJump, one-pixel (with query counts) and a universal perturbation."""
    y_np = np.asarray(y)
    linf, l2 = 0.3, args.l2_eps
    nb = args.black_box_n
    rows = {}
    black_box = {
        "Square linf 5000": (A.square(linf, return_queries=True), x, y),
        "Square l2 5000": (A.square(l2, norm="l2", return_queries=True), x, y),
        "HopSkipJump l2": (A.hopskipjump(return_queries=True), x[:nb], y[:nb]),
        "one-pixel": (A.one_pixel(return_queries=True), x[:nb], y[:nb]),
    }
    for name, (attack, xs, ys) in black_box.items():
        started = time.perf_counter()
        x_adv, queries = run_batched(attack, logits_fn, xs, ys, key, args.batch)
        fooled = predictions(logits_fn, x_adv) != np.asarray(ys)
        acc = float(np.mean(~fooled))
        entry = {"robust_acc": round(100 * acc, 2), "n": len(ys)}
        entry["median_queries"] = float(np.median(np.asarray(queries)))
        if name.startswith("HopSkipJump"):
            norms = np.asarray(A.l2.norm(x_adv - xs))
            entry["median_l2"] = float(np.median(np.where(fooled, norms, np.inf)))
        rows[name] = entry
        seconds = time.perf_counter() - started
        print(f"{name:18s}: {json.dumps(entry)}  {seconds:6.1f} s", flush=True)
    delta = A.universal_perturbation(logits_fn, x, y, eps=linf, key=key)
    fooled = predictions(logits_fn, jnp.clip(x + delta, 0, 1)) != y_np
    rows["universal linf (fit and measured on the same images)"] = round(100 * fooled.mean(), 2)
    print(f"universal perturbation linf 0.3: fooling rate {100 * fooled.mean():.2f}%")
    results["black_box"] = rows


if __name__ == "__main__":
    main()
