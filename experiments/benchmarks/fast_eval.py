"""Fast AutoAttack beside standard AutoAttack (and torchattacks' AutoAttack), same weights.

For each model trained by a recipe on the 5,000-image MNIST training subset
(undefended, PGD-AT, TRADES, FGSM-RS, and defensive distillation at T = 100 as
the model with masked gradients), on the first ``--n`` images of the official
MNIST test set (no training used them), at Linf eps = 0.3, in one process:

* ``advjax.evaluation.autoattack`` (standard version: APGD-CE, APGD-T with 9
  targets, FAB-T with 9 targets, Square with 5,000 queries, 100 iterations);
* ``advjax.evaluation.fast_autoattack`` with its defaults;
* when torchattacks is installed (and not ``--no-torchattacks``), its
  ``AutoAttack(version="standard")`` (the paper's settings) on the same
  weights ported to PyTorch.

Printed per model: clean and robust accuracy, the images standard AutoAttack
broke that the fast evaluation did not (and the reverse), wall times (compile
included: JAX's compilation caches are cleared before each evaluation, so the
one timed second does not reuse programs the first compiled) and the ratio
fast / standard, and whether the fast evaluation
escalated (and why). Runs missing from ``--runs-dir`` are trained first with
``advjax train <recipe>`` (about 3-4 minutes each on a 2-core CPU).

    python experiments/benchmarks/fast_eval.py --runs-dir runs/fast_eval [--n 1000]
        [--models pgd_at,trades] [--no-torchattacks] [--out fast_eval.json]
    python experiments/benchmarks/fast_eval.py --tiny   # a smoke run, untrained weights
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from _recipe_runs import train_missing
from _torch_port import torch_fast_mnist

from advjax import data, evaluation, models, parallel
from advjax.runs import load_run

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
EPS = 0.3
#: model name -> (recipe, extra --set options)
MODELS = {
    "undefended": ("standard", []),
    "pgd_at": ("pgd_at", []),
    "trades": ("trades", []),
    "fgsm_rs": ("fgsm_rs", []),
    "distillation_t100": ("distillation", []),
}


def _torchattacks_aa(variables, x, y, batch: int):
    """torchattacks' standard AutoAttack on the ported weights: (robust [N], seconds)."""
    import torch
    import torchattacks

    model = torch_fast_mnist(variables).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    attack = torchattacks.AutoAttack(
        model, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0
    )
    started = time.perf_counter()
    robust = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch].transpose(0, 3, 1, 2)))
        yb = torch.from_numpy(y[i : i + batch].astype(np.int64))
        x_adv = attack(xb, yb)
        with torch.no_grad():
            robust.append((model(x_adv).argmax(1) == yb).numpy())
    return np.concatenate(robust), time.perf_counter() - started


def _row(name, config, aa, aa_seconds, fast, fast_seconds, torch_robust, torch_seconds):
    aa_only = int((~aa.robust & fast.robust).sum())
    fast_only = int((aa.robust & ~fast.robust).sum())
    row = {
        "model": name,
        "recipe": config,
        "clean_accuracy": aa.clean_accuracy,
        "autoattack": {"robust_accuracy": aa.robust_accuracy, "seconds": aa_seconds},
        "fast": {
            "robust_accuracy": fast.robust_accuracy,
            "seconds": fast_seconds,
            "escalated": fast.escalated,
            "stages": fast.per_attack,
        },
        "broken_by_autoattack_only": aa_only,
        "broken_by_fast_only": fast_only,
        "images_broken_by_autoattack_only": np.flatnonzero(~aa.robust & fast.robust).tolist(),
        "images_broken_by_fast_only": np.flatnonzero(aa.robust & ~fast.robust).tolist(),
        "time_ratio_fast_over_autoattack": fast_seconds / aa_seconds,
    }
    if torch_robust is not None:
        row["torchattacks"] = {
            "robust_accuracy": float(torch_robust.mean()),
            "seconds": torch_seconds,
            "broken_by_torchattacks_not_fast": int((~torch_robust & fast.robust).sum()),
        }
    return row


def _print(row) -> None:
    aa, fast = row["autoattack"], row["fast"]
    line = (
        f"{row['model']:<18} clean {100 * row['clean_accuracy']:6.2f}%  "
        f"AA {100 * aa['robust_accuracy']:6.2f}% {aa['seconds']:7.1f} s  "
        f"fast {100 * fast['robust_accuracy']:6.2f}% {fast['seconds']:6.1f} s  "
        f"ratio {row['time_ratio_fast_over_autoattack']:.3f}  "
        f"AA-only {row['broken_by_autoattack_only']} fast-only {row['broken_by_fast_only']}"
    )
    if "torchattacks" in row:
        ta = row["torchattacks"]
        line += f"  torchattacks {100 * ta['robust_accuracy']:6.2f}% {ta['seconds']:7.1f} s"
    print(line, flush=True)
    if fast["escalated"]:
        print(f"{'':<18} fast escalated: {fast['escalated']}", flush=True)


def _tiny_models():
    model = models.get_model("fast_mnist")
    variables = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    return {"untrained": (models.eval_logits_fn(model, variables), variables, {"tiny": True})}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "fast_eval")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--no-torchattacks", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="untrained weights, tiny settings")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cpu-devices", type=int, default=None, help="XLA CPU devices (default: one per core)"
    )
    args = parser.parse_args(argv)
    parallel.use_cpu_devices(args.cpu_devices)

    if args.tiny:
        test = data.load_embedded_mnist("test")
        n, aa_options = 16, dict(version="custom")
        fast_options = dict(steps=4, queries=20)
        chosen = _tiny_models()
    else:
        test = data.load_mnist("test", args.data_dir, download=False)
        n, aa_options, fast_options = args.n, {}, {}
        chosen = {}
        for name in args.models.split(","):
            recipe, extra = MODELS[name]
            run = load_run(train_missing(args.runs_dir / name, recipe, args.data_dir, extra))
            recipe = run.config["recipe"]
            chosen[name] = (run.logits_fn, run.variables, recipe)
    x = np.asarray(data.to_device(test.images[:n]))
    y = np.asarray(test.labels[:n])
    use_torch = not args.no_torchattacks and not args.tiny
    if use_torch:
        try:
            import torchattacks  # noqa: F401
        except ImportError:
            use_torch = False
            print("torchattacks is not installed: no torchattacks column", flush=True)
    print(f"{n} official MNIST test images, Linf eps {EPS}, {jax.device_count()} device(s)")
    rows = []
    for name, (logits_fn, variables, config) in chosen.items():
        key = jax.random.key(0)
        if args.tiny:
            aa_options["attacks"] = evaluation.standard_attacks(EPS, steps=4, queries=20)
        jax.clear_caches()  # each evaluation compiles its own programs: no head start
        started = time.perf_counter()
        aa = evaluation.autoattack(
            logits_fn, x, y, eps=EPS, key=key, batch_size=args.batch_size, **aa_options
        )
        aa_seconds = time.perf_counter() - started
        jax.clear_caches()
        started = time.perf_counter()
        fast = evaluation.fast_autoattack(
            logits_fn, x, y, eps=EPS, key=key, batch_size=args.batch_size, **fast_options
        )
        fast_seconds = time.perf_counter() - started
        torch_robust = torch_seconds = None
        if use_torch:
            torch_robust, torch_seconds = _torchattacks_aa(variables, x, y, args.batch_size)
        row = _row(name, config, aa, aa_seconds, fast, fast_seconds, torch_robust, torch_seconds)
        _print(row)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
