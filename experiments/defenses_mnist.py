"""Defenses on MNIST, evaluated naively and adaptively (docs/defenses.md).

Trains an undefended FastMNIST net (standard training, 2 epochs on the
embedded 5k images), loads a PGD-trained one from a run directory written by
``advjax quickstart`` (trained here with the quick-start defaults when the
directory does not exist yet), and for each model evaluates every defense of
:mod:`advjax.defenses` with :func:`advjax.defenses.evaluate_defense` at Linf
eps 0.3: clean accuracy, false-positive rate, robust accuracy under PGD on the
bare model transferred to the defended one (naive) and under the adaptive
attack (BPDA / EOT / joint detector objective, backed by a gradient-free
Square attack on the survivors), and the time overhead.

It also checks 1-bit depth reduction (binarisation) beyond attacks: at Linf
eps a pixel of value v can only binarise to ``round(v - eps)`` or
``round(v + eps)``, so every input the attacker can reach is a vertex of the
box ``[round(x - eps), round(x + eps)]`` in front of the classifier. The script
attacks the classifier over that whole box (a relaxation: a superset of what
the attacker can reach) and bounds it with CROWN; an example CROWN certifies
on the box is robust to every attack on the binarised model.

Usage (the quick-start run takes about 5 minutes when it has to be trained):
  advjax quickstart --out /tmp/qsfinal
  python experiments/defenses_mnist.py --pgd-run /tmp/qsfinal --examples 500 \
      --out /tmp/defenses_mnist
The two models are independent: ``--models standard`` and ``--models pgd`` (with
different ``--out``) run them as two processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from advjax import data, defenses, models, train
from advjax.attacks import apgd, pgd
from advjax.certify import linear_bounds, specification_matrix
from advjax.runs import load_run


def train_undefended(epochs: int, seed: int):
    """``(model, variables)`` of FastMNIST trained normally on the embedded 5k images."""
    train_set = data.load_embedded_mnist("train")
    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(seed), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
    )
    result = train.fit(
        state,
        train_set,
        train.make_step(train.standard()),
        epochs=epochs,
        batch_size=50,
        key=jax.random.key(seed + 1),
        progress=False,
    )
    return model, result.state.variables()


def load_or_train_pgd(run_dir: str):
    """``(model, variables)`` of the PGD-trained run; trains it (quick-start defaults) if absent."""
    if not (Path(run_dir) / "config.json").exists():
        print(f"no run in {run_dir}: training one with the quick-start defaults", flush=True)
        command = [sys.executable, "-m", "advjax", "quickstart", "--out", run_dir, "--no-progress"]
        subprocess.run(command, check=True)
    run = load_run(run_dir)
    return run.model, run.variables


def build_defenses(f, features, autoencoder, x_cal, x_train, y_train, fpr):
    """Every defense of advjax.defenses around logits function ``f``."""
    p = defenses
    rows = [
        ("undefended", f),
        ("bit_depth(1)", p.preprocess(f, p.bit_depth(1))),
        ("bit_depth(4)", p.preprocess(f, p.bit_depth(4))),
        ("median_smoothing(2)", p.preprocess(f, p.median_smoothing(2))),
        ("median_smoothing(3)", p.preprocess(f, p.median_smoothing(3))),
        ("gaussian_smoothing(1)", p.preprocess(f, p.gaussian_smoothing(1.0))),
        ("jpeg(50)", p.preprocess(f, p.jpeg(50))),
        ("jpeg(25)+bit_depth(3)", p.preprocess(f, p.jpeg(25), p.bit_depth(3))),
        ("gaussian_noise(0.3)", p.preprocess(f, p.gaussian_noise(0.3))),
        ("random_resize_pad(0.8)", p.preprocess(f, p.random_resize_pad(0.8))),
    ]
    squeezers = [p.bit_depth(1), p.median_smoothing(2), p.jpeg(50)]
    vote = p.ensemble(
        [p.preprocess(f, s).adaptive() for s in squeezers], method="vote"
    )  # BPDA members: exact forward, approximate backward
    rows.append(("vote(bit1, median2, jpeg50)", vote))
    detectors = {
        "feature_squeezing": p.feature_squeezing_detector(f),
        "confidence": p.confidence_detector(f),
        "entropy": p.entropy_detector(f),
        "autoencoder": p.reconstruction_detector(autoencoder),
        "mahalanobis (logits)": p.mahalanobis_detector(f, x_train, y_train),
        "mahalanobis (hidden fc1)": p.mahalanobis_detector(features, x_train, y_train),
    }
    calibrated = {}
    for name, det in detectors.items():
        calibrated[name] = p.calibrate(det, x_cal, fpr=fpr)
        rows.append((f"detector: {name}", p.guard(f, detectors=[calibrated[name]])))
    rows.append(("guard: all detectors", p.guard(f, detectors=list(calibrated.values()))))
    rows.append(
        (
            "guard: agreement(bit1, median2, jpeg50)",
            p.guard(
                f, members=[p.preprocess(f, s).adaptive() for s in squeezers], min_agreement=1.0
            ),
        )
    )
    return rows, calibrated


def binarisation_check(f, x, y, eps: float, key) -> dict:
    """Attacks and certifies the classifier over the box the binarised input can reach.

    Returns robust accuracies (fractions) of the binarised model under the
    relaxed-box attacks (their iterates rounded to the box's vertices) and the
    fraction CROWN certifies over the box (a lower bound on the robust accuracy
    of 1-bit depth reduction against any attack with budget ``eps``).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    lo = jnp.round(jnp.clip(x - eps, 0.0, 1.0))
    hi = jnp.round(jnp.clip(x + eps, 0.0, 1.0))
    out = {
        "examples": len(x),
        "binarised_clean_accuracy": float(jnp.mean(f(jnp.round(x)).argmax(-1) == y)),
        "mean_flippable_pixels": float(jnp.mean(jnp.sum(hi != lo, axis=(1, 2, 3)))),
    }

    # Relaxation: z in [0, 1] per pixel, image lo + (hi - lo) * z (z = 0.5 +- 0.5).
    def on_box(lo, hi):
        return lambda z: f(lo + (hi - lo) * z)

    robust = np.ones(len(x), bool)
    for name, attack in [("ce", apgd(0.5, restarts=3)), ("dlr", apgd(0.5, loss="dlr", restarts=3))]:

        @jax.jit
        def run(lo, hi, yb, key, attack=attack):
            z = attack(on_box(lo, hi), jnp.full_like(lo, 0.5), yb, key=key)
            return (
                on_box(lo, hi)(z).argmax(-1) == yb,
                on_box(lo, hi)(jnp.round(z)).argmax(-1) == yb,
            )

        relaxed, rounded = (
            np.concatenate(v)
            for v in zip(
                *(
                    run(lo[i : i + 250], hi[i : i + 250], y[i : i + 250], key)
                    for i in range(0, len(x), 250)
                ),
                strict=True,
            )
        )
        out[f"box_apgd_{name}_relaxed"] = float(relaxed.mean())
        out[f"box_apgd_{name}_binarised"] = float(rounded.mean())
        robust &= rounded
    out["box_attacks_binarised"] = float(robust.mean())

    bounds = linear_bounds(lambda xi: f(xi[None])[0], "crown")
    num_classes = f(x[:1]).shape[-1]

    @jax.jit
    def certify(lo, hi, yb):
        def one(lower, upper, yi):
            spec = specification_matrix(yi, num_classes).astype(lower.dtype)
            margin, _ = bounds(lower, upper, spec)
            return jnp.min(jnp.where(jnp.arange(num_classes) == yi, jnp.inf, margin)) > 0

        return jax.vmap(one)(lo, hi, yb)

    certified = np.concatenate(
        [
            np.asarray(certify(lo[i : i + 25], hi[i : i + 25], y[i : i + 25]))
            for i in range(0, len(x), 25)
        ]
    )
    out["crown_certified"] = float(certified.mean())
    out["certified_but_attacked"] = int(np.sum(certified & ~robust))  # must be 0
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pgd-run", default="/tmp/qsfinal", help="the PGD-trained run directory")
    parser.add_argument(
        "--models",
        default="standard,pgd",
        help="comma-separated subset of 'standard' and 'pgd' (run them as separate processes)",
    )
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--fpr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eot", type=int, default=10)
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--certify-examples", type=int, default=100)
    parser.add_argument("--undefended-epochs", type=int, default=2)
    parser.add_argument("--out", default="/tmp/defenses_mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_set = data.load_embedded_mnist("train")
    test_set = data.load_embedded_mnist("test")
    test_x = np.asarray(data.to_device(test_set.images))
    test_y = test_set.labels.astype(np.int32)
    # Evaluate on the first `examples` test images; calibrate detectors on the last 1000
    # (disjoint); fit the autoencoder and Mahalanobis statistics on training images.
    x_eval, y_eval = test_x[: args.examples], test_y[: args.examples]
    x_cal = test_x[-1000:]
    if args.examples > len(test_x) - 1000:
        raise SystemExit(f"--examples must be at most {len(test_x) - 1000}")
    x_train = np.asarray(data.to_device(train_set.images))
    y_train = train_set.labels.astype(np.int32)

    started = time.perf_counter()
    key = jax.random.key(args.seed)
    chosen = {m.strip() for m in args.models.split(",") if m.strip()}
    if not chosen or chosen - {"standard", "pgd"}:
        raise SystemExit(f"--models: expected 'standard' and/or 'pgd', got {args.models!r}")
    models_to_run = []
    if "standard" in chosen:
        models_to_run.append(
            ("standard (2 ep)", train_undefended(args.undefended_epochs, args.seed))
        )
    if "pgd" in chosen:
        models_to_run.append(("PGD-AT (quickstart)", load_or_train_pgd(args.pgd_run)))
    autoencoder = defenses.train_autoencoder(x_train, key=jax.random.fold_in(key, 1), epochs=5)
    print(f"models ready in {time.perf_counter() - started:.0f} s", flush=True)

    naive = pgd(args.eps, steps=40)
    adaptive = pgd(args.eps, steps=args.steps, step_size=args.eps / 20)
    results, fpr_checks, binarisation, model_seconds = [], {}, {}, {}
    for model_name, (model, variables) in models_to_run:
        model_started = time.perf_counter()
        f = models.eval_logits_fn(model, variables)
        features = defenses.layer_features(model, variables, "fc1")
        rows, calibrated = build_defenses(
            f, features, autoencoder, x_cal, x_train, y_train, args.fpr
        )
        fpr_checks[model_name] = {
            name: defenses.false_positive_rate(det, x_eval) for name, det in calibrated.items()
        }
        for name, defense in rows:
            t0 = time.perf_counter()
            result = evaluate_one(
                defense, name, model_name, x_eval, y_eval, key, f, naive, adaptive, args
            )
            results.append(result)
            print(result.markdown_row(), f"({time.perf_counter() - t0:.0f} s)", flush=True)
        # One randomized defense without EOT, to show the warning and the flag.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate_one(
                defenses.preprocess(f, defenses.random_resize_pad(0.8)),
                "random_resize_pad(0.8), no EOT",
                model_name,
                x_eval,
                y_eval,
                key,
                f,
                naive,
                adaptive,
                args,
                eot_samples=1,
            )
        messages = [
            str(w.message) for w in caught if w.category is defenses.RandomizedWithoutEOTWarning
        ]
        print("warning:", messages[0] if messages else None)
        results.append(result)
        print(result.markdown_row(), flush=True)
        if args.certify_examples:
            t0 = time.perf_counter()
            n = min(args.certify_examples, len(x_eval))
            binarisation[model_name] = binarisation_check(f, x_eval[:n], y_eval[:n], args.eps, key)
            binarisation[model_name]["seconds"] = time.perf_counter() - t0
            print("binarisation check:", json.dumps(binarisation[model_name]), flush=True)
        model_seconds[model_name] = time.perf_counter() - model_started

    tables = []
    for model_name, _ in models_to_run:
        tables.append(
            f"{model_name}, n = {len(x_eval)}, Linf eps = {args.eps}\n\n"
            + defenses.to_markdown([r for r in results if r.model == model_name])
        )
    text = "\n\n".join(tables)
    print("\n" + text)
    print(
        f"\nheld-out FPR of the detectors calibrated at {args.fpr}:",
        json.dumps(fpr_checks, indent=1),
    )
    (out / "defenses.md").write_text(text + "\n")
    (out / "defenses.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "results": [r.__dict__ for r in results],
                "heldout_fpr": fpr_checks,
                "binarisation_check": binarisation,
                "model_seconds": model_seconds,
                "seconds": time.perf_counter() - started,
                "jax": jax.__version__,
            },
            indent=1,
        )
    )
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out}/defenses.md")


def evaluate_one(defense, name, model_name, x, y, key, base, naive, adaptive, args, **kwargs):
    options = dict(eot_samples=args.eot, gradient_free_queries=args.square_queries)
    options.update(kwargs)
    return defenses.evaluate_defense(
        defense,
        x,
        y,
        eps=args.eps,
        key=key,
        base_logits_fn=base,
        name=name,
        model=model_name,
        naive_attack=naive,
        adaptive_attack=adaptive,
        **options,
    )


if __name__ == "__main__":
    main()
