"""Defenses on MNIST, evaluated naively and adaptively (docs/defenses.md).

Trains an undefended FastMNIST net (standard training, 2 epochs on the
embedded 5k images), loads a PGD-trained one from a run directory (``advjax
quickstart --out /tmp/qs_def --epochs 8``), and for each model evaluates every
defense of :mod:`advjax.defenses` with :func:`advjax.defenses.evaluate_defense`
at Linf eps 0.3: clean accuracy, false-positive rate, robust accuracy under
PGD on the bare model transferred to the defended one (naive) and under the adaptive
attack (BPDA / EOT / joint detector objective), and the time overhead.

Usage:
  python experiments/defenses_mnist.py --robust-run /tmp/qs_def --examples 500 \
      --out /tmp/defenses_mnist
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import optax

from advjax import data, defenses, models, train
from advjax._xla_flags import use_fast_cpu_loops
from advjax.attacks import pgd
from advjax.runs import load_run


def train_undefended(epochs: int, seed: int):
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
    return models.eval_logits_fn(model, result.state.variables())


def build_defenses(f, x_cal, x_train, y_train, key, fpr):
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
    ae_key, _ = jax.random.split(key)
    autoencoder = p.train_autoencoder(x_train, key=ae_key, epochs=5)
    detectors = {
        "feature_squeezing": p.feature_squeezing_detector(f),
        "confidence": p.confidence_detector(f),
        "entropy": p.entropy_detector(f),
        "autoencoder": p.reconstruction_detector(autoencoder),
        "mahalanobis (on logits)": p.mahalanobis_detector(f, x_train, y_train),
    }
    calibrated = {}
    for name, det in detectors.items():
        calibrated[name] = p.calibrate(det, x_cal, fpr=fpr)
        rows.append((f"detector: {name}", p.guard(f, detectors=[calibrated[name]])))
    rows.append(
        (
            "guard: all detectors",
            p.guard(f, detectors=list(calibrated.values())),
        )
    )
    rows.append(
        (
            "guard: agreement(bit1, median2, jpeg50)",
            p.guard(
                f, members=[p.preprocess(f, s).adaptive() for s in squeezers], min_agreement=1.0
            ),
        )
    )
    return rows, calibrated


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robust-run", default="/tmp/qs_def")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--fpr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eot", type=int, default=10)
    parser.add_argument("--undefended-epochs", type=int, default=2)
    parser.add_argument("--out", default="/tmp/defenses_mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    use_fast_cpu_loops()
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
    x_train = np.asarray(data.to_device(train_set.images))
    y_train = train_set.labels.astype(np.int32)

    started = time.perf_counter()
    undefended = train_undefended(args.undefended_epochs, args.seed)
    models_to_run = [("standard (2 ep)", undefended)]
    if args.robust_run:
        models_to_run.append(("PGD-AT (quickstart)", load_run(args.robust_run).logits_fn))
    print(f"models ready in {time.perf_counter() - started:.0f} s", flush=True)

    naive = pgd(args.eps, steps=40)
    adaptive = pgd(args.eps, steps=args.steps, step_size=args.eps / 20)
    key = jax.random.key(args.seed)
    results, fpr_checks = [], {}
    for model_name, f in models_to_run:
        rows, calibrated = build_defenses(f, x_cal, x_train, y_train, key, args.fpr)
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
            result = defenses.evaluate_defense(
                defenses.preprocess(f, defenses.random_resize_pad(0.8)),
                x_eval,
                y_eval,
                eps=args.eps,
                key=key,
                base_logits_fn=f,
                name="random_resize_pad(0.8), no EOT",
                model=model_name,
                naive_attack=naive,
                adaptive_attack=adaptive,
                eot_samples=1,
            )
        print("warning:", caught[0].message if caught else None)
        results.append(result)
        print(result.markdown_row(), flush=True)

    table = defenses.to_markdown(results)
    print("\n" + table)
    print(
        "\nheld-out FPR of the detectors calibrated at", args.fpr, json.dumps(fpr_checks, indent=1)
    )
    (out / "defenses.md").write_text(table + "\n")
    (out / "defenses.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "results": [r.__dict__ for r in results],
                "heldout_fpr": fpr_checks,
                "seconds": time.perf_counter() - started,
                "jax": jax.__version__,
            },
            indent=1,
        )
    )
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out}/defenses.md")


def evaluate_one(defense, name, model_name, x, y, key, base, naive, adaptive, args):
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
        eot_samples=args.eot,
    )


if __name__ == "__main__":
    main()
