"""The quick start's evaluation with and without early exit, side by side, same weights.

``evaluate(..., early_exit=True)`` (the default) attacks budget by budget,
smallest first, and skips at each budget the points a smaller budget already
broke; an attack with restarts runs them one at a time on the points no
earlier restart broke. ``early_exit=False`` attacks every correctly classified
point at every budget with every restart. Both give the same robust counts
(every example is attacked with its own key); this script checks that and
times both, interleaved in one process: round 1 includes compilation, later
rounds are warm.

The workload is the quick start's: FGSM and PGD-``eval_steps`` with
``eval_restarts`` restarts (step 2.5 * eps / steps) at eps 0.1 / 0.2 / 0.3 on
the first ``--n`` embedded MNIST test images, with the weights of a run
written by ``advjax quickstart`` (trained first when ``--run`` is missing).

    python experiments/benchmarks/evaluate_early_exit.py [--run runs/quickstart]
        [--n 2000] [--rounds 2] [--cpu-devices N]
    python experiments/benchmarks/evaluate_early_exit.py --tiny   # untrained, 64 images
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from advjax import data, evaluation, models, parallel
from advjax.attacks import fgsm, pgd
from advjax.runs import load_run

ROOT = Path(__file__).resolve().parents[2]


def _quickstart_run(run: Path):
    """(logits_fn, the quick start's settings) of ``run``, trained first if missing."""
    if not (run / "config.json").exists():
        command = [sys.executable, "-m", "advjax", "quickstart", "--out", str(run)]
        print("training:", " ".join(command + ["--no-progress"]), flush=True)
        subprocess.run(command + ["--no-progress"], check=True)
    loaded = load_run(run)
    return loaded.logits_fn, loaded.config["recipe"]["config"]


def _attacks(settings: dict) -> dict:
    """The quick start's attacks, built from its recorded settings."""
    steps, restarts = settings["eval_steps"], settings["eval_restarts"]
    return {
        "fgsm": lambda eps: fgsm(eps),
        f"pgd{steps}x{restarts}": lambda eps: pgd(
            eps, steps=steps, step_size=settings["eval_step_size"], restarts=restarts
        ),
    }


def _tiny():
    model = models.get_model("fast_mnist")
    variables = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    settings = dict(eval_steps=3, eval_restarts=2, eval_step_size=None, eval_epsilons=[0.002, 0.3])
    return models.eval_logits_fn(model, variables), settings


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "quickstart")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="untrained weights, 64 images")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cpu-devices", type=int, default=None, help="XLA CPU devices (default: one per core)"
    )
    args = parser.parse_args(argv)
    parallel.use_cpu_devices(args.cpu_devices)
    logits_fn, settings = _tiny() if args.tiny else _quickstart_run(args.run)
    n = 64 if args.tiny else args.n
    test = data.load_embedded_mnist("test")
    x = np.asarray(data.to_device(test.images[:n]))
    y = np.asarray(test.labels[:n])
    attacks, budgets = _attacks(settings), tuple(settings["eval_epsilons"])
    print(f"{n} embedded MNIST test images, eps {list(budgets)}, {jax.device_count()} device(s)")
    seconds = {True: [], False: []}
    tables = {}
    for round_ in range(args.rounds):
        for early_exit in (False, True):
            started = time.perf_counter()
            report = evaluation.evaluate(
                logits_fn, x, y, attacks, budgets, key=jax.random.key(0), early_exit=early_exit
            )
            seconds[early_exit].append(time.perf_counter() - started)
            tables[early_exit] = [list(a.robust_accuracy) for a in report.attacks]
            print(
                f"round {round_ + 1} early_exit={early_exit!s:<5} "
                f"{seconds[early_exit][-1]:6.1f} s  robust accuracy "
                f"{np.round(100 * np.asarray(tables[early_exit]), 2).tolist()}",
                flush=True,
            )
    same = np.array_equal(np.asarray(tables[True]), np.asarray(tables[False]))
    result = {
        "images": n,
        "devices": jax.device_count(),
        "seconds_without_early_exit": seconds[False],
        "seconds_with_early_exit": seconds[True],
        "warm_ratio": seconds[True][-1] / seconds[False][-1],
        "identical_robust_accuracy": bool(same),
        "robust_accuracy": np.asarray(tables[True]).tolist(),
    }
    print(
        f"last round: {seconds[False][-1]:.1f} s -> {seconds[True][-1]:.1f} s "
        f"(ratio {result['warm_ratio']:.3f}); identical robust accuracy: {same}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["identical_robust_accuracy"] else 1)
