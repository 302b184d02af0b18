"""Shared plumbing of the MNIST paper recipes: flags, data, training and the final evaluation.

Every recipe trains on the 5,000 shared training images and evaluates on the
official 10,000 test images with PGD-50 x 10 restarts, step 0.01, at Linf 0.3
(ten runs of ``advjax.pgd(0.3, steps=50, step_size=0.01)``, each on the points
the earlier ones did not break).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _shared_data import SHARED_DATA

import advjax  # noqa: E402
from advjax import data, evaluation, models, train  # noqa: E402

DATA_DIR = SHARED_DATA
EPS = 0.3


def parser(description: str, *, epochs: int, model: str, lr: float, batch_size: int = 100):
    """The flags every recipe shares (defaults are the recipe's)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=10000)
    p.add_argument("--model", default=model)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--eval-restarts", type=int, default=10)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument(
        "--no-check-apgd",
        dest="check_apgd",
        action="store_false",
        help="skip APGD-CE (100 iterations) on the points PGD leaves robust",
    )
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--out", default=None, help="run folder (checkpoints, metrics.jsonl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tensorboard", action="store_true", help="TensorBoard logs in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--init",
        choices=("torch", "flax"),
        default="torch",
        help="initial weights: PyTorch's defaults (as in the reference code) or Flax's",
    )
    return p


def add_awp_flags(p) -> None:
    """``--awp-gamma`` / ``--awp-warmup``: adversarial weight perturbation (off by default)."""
    p.add_argument(
        "--awp-gamma",
        type=float,
        default=0.0,
        help="AWP (Wu et al. 2020) relative weight perturbation; 0 turns it off "
        "(their defaults: 0.01 for PGD-AT, 0.005 for TRADES)",
    )
    p.add_argument("--awp-warmup", type=int, default=0, help="epochs before AWP starts")


def with_awp(args, objective, train_set):
    """``objective`` wrapped in ``train.awp`` when ``--awp-gamma`` is positive."""
    if args.awp_gamma <= 0.0:
        return objective
    warmup = args.awp_warmup * steps_per_epoch(args, train_set)
    return train.awp(objective, gamma=args.awp_gamma, warmup_steps=warmup)


def awp_suffix(args) -> str:
    """The recipe-name suffix naming AWP's settings, or nothing."""
    return f", AWP gamma {args.awp_gamma:g}" if args.awp_gamma > 0.0 else ""


def load_data(args):
    """(train Dataset, test x on device, test y) from the shared MNIST files."""
    root = Path(args.data_dir) / "mnist"
    train_images = root / "train-5k-images-idx3-ubyte.gz"
    if train_images.is_file():
        train_set = data.load_idx_pair(train_images, root / "train-5k-labels-idx1-ubyte.gz")
        test_set = data.load_mnist("test", data_dir=args.data_dir, download=False)
    else:  # the embedded subset: the same 5k training images, 2k test images
        print(f"{root} not found: using the embedded MNIST subset (2,000 test images)")
        train_set = data.load_embedded_mnist("train")
        test_set = data.load_embedded_mnist("test")
    # the 5k file is sorted by class: subsets are a fixed random draw (seed 0)
    order = np.random.default_rng(0).permutation(len(train_set))
    train_set = train_set.subset(np.sort(order[: min(args.train_size, len(train_set))]))
    n_test = min(args.test_size, len(test_set))
    x_test = data.to_device(test_set.images[:n_test])
    y_test = np.asarray(test_set.labels[:n_test], np.int32)
    return train_set, x_test, y_test


def make_state(args, train_set, tx: optax.GradientTransformation, apply_wrapper=None):
    """A fresh TrainState for ``args.model``."""
    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(args.seed), train_set.image_shape)
    if args.init == "torch":
        params = models.torch_default_init(variables["params"], jax.random.key(args.seed))
        variables = {**variables, "params": params}
    apply_fn = model.apply if apply_wrapper is None else apply_wrapper(model.apply)
    state = train.TrainState.create(
        apply_fn=apply_fn,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=tx,
    )
    return model, state


def steps_per_epoch(args, train_set) -> int:
    return data.num_batches(len(train_set), args.batch_size)


def monitor(train_set, n: int = 500, steps: int = 10):
    """Per-epoch check on ``n`` training images: clean and PGD-``steps`` accuracy at eps 0.3."""
    pick = np.random.default_rng(1).permutation(len(train_set))[:n]  # the file is class-sorted
    x = data.to_device(train_set.images[pick])
    y = np.asarray(train_set.labels[pick], np.int32)
    return train.robust_eval_fn(x, y, advjax.pgd(EPS, steps=steps, step_size=EPS / 4))


def run_fit(args, state, train_set, step, *, eval_fn=None, epochs=None, **kwargs):
    out = Path(args.out) if args.out else None
    started = time.perf_counter()
    result = train.fit(
        state,
        train_set,
        step,
        epochs=epochs if epochs is not None else args.epochs,
        batch_size=args.batch_size,
        key=jax.random.key(args.seed + 1),
        eval_fn=eval_fn,
        checkpoint_dir=out / "checkpoints" if out else None,
        metrics_path=out / "metrics.jsonl" if out else None,
        tensorboard_dir=out / "tensorboard" if (out and args.tensorboard) else None,
        progress=not args.no_progress,
        **kwargs,
    )
    print(f"training: {time.perf_counter() - started:.1f} s, {int(result.state.step)} steps")
    return result


def restarted(args, attack_factory, name: str) -> dict:
    """``--eval-restarts`` runs of one attack, each only on the points no earlier run broke."""
    return {f"{name}-r{r}": attack_factory(EPS) for r in range(args.eval_restarts)}


def final_eval(
    args,
    logits_fn: Callable,
    x_test,
    y_test,
    *,
    name: str,
    paper: str,
    extra_attacks: dict | None = None,
    train_seconds: float | None = None,
):
    """PGD-50 x 10 (step 0.01) at Linf 0.3 on the test set; prints it beside the paper's figure.

    Restarts run one after another on the points still robust (as AutoAttack
    does), which is the per-example worst case over the 10 restarts at a
    fraction of the cost. ``extra_attacks`` maps names to ``eps -> attack``
    factories of one run each; they get the same restarts, and the worst case
    over all attacks is reported too.
    """
    attacks = {
        f"pgd{args.eval_steps}x{args.eval_restarts}": lambda e: advjax.pgd(
            e, steps=args.eval_steps, step_size=0.01
        )
    }
    attacks.update(extra_attacks or {})
    results = {
        "recipe": name,
        "test_size": int(len(y_test)),
        "train_size": args.train_size,
        "epochs": args.epochs,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
    }
    x_host = np.asarray(x_test)
    robust_all = None
    started = time.perf_counter()
    for index, (attack_name, factory) in enumerate(attacks.items()):
        runs = restarted(args, factory, attack_name)
        if index == 0 and args.check_apgd:
            # a stronger check on the points PGD left: APGD-CE, 100 iterations (Croce & Hein)
            runs["apgd-ce"] = advjax.apgd(EPS, loss="ce", steps=100)
        result = evaluation.autoattack(
            logits_fn,
            x_host,
            y_test,
            eps=EPS,
            key=jax.random.fold_in(jax.random.key(args.seed + 2), index),
            version="custom",
            attacks=runs,
            diagnostics=index == 0,
        )
        after = {
            n: round(100 * r["robust_accuracy_after"], 2) for n, r in result.per_attack.items()
        }
        results["clean_acc"] = round(100 * result.clean_accuracy, 2)
        results[f"{attack_name}@{EPS:g}"] = after[f"{attack_name}-r{args.eval_restarts - 1}"]
        if "apgd-ce" in after:
            results[f"{attack_name}+apgd-ce@{EPS:g}"] = after["apgd-ce"]
        print(f"{attack_name}: robust accuracy after each run {after}")
        for warning in result.warnings:
            print(f"WARNING: {warning}")
        robust_all = result.robust if robust_all is None else robust_all & result.robust
    if len(attacks) > 1:
        results[f"worst_case@{EPS:g}"] = round(100 * float(robust_all.mean()), 2)
    results["eval_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n{name}: measured {json.dumps(results)}")
    print(f"{name}: paper       {paper}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def run_beta_recipe(description: str, make_objective, *, name: str, paper) -> None:
    """The shared TRADES/MART recipe: SmallCNN, ramped eps, Adam triangular LR, PGD-50x10 eval.

    Args:
      description: the script's one-line description (its ``--help``).
      make_objective: ``(epsilon, beta=..., steps=..., step_size=...) -> objective``,
        i.e. ``train.trades`` or ``train.mart``.
      name: ``args -> recipe name`` for the printed results.
      paper: ``beta -> the paper's figure`` to print beside ours.
    """
    p = parser(description, epochs=20, model="small_cnn", lr=1e-3)
    p.add_argument("--beta", type=float, default=6.0)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--train-step-size", type=float, default=0.01)
    p.add_argument("--ramp", type=float, default=0.3, help="eps ramp, fraction of training")
    add_awp_flags(p)
    args = p.parse_args()
    train_set, x_test, y_test = load_data(args)
    total = args.epochs * steps_per_epoch(args, train_set)
    _, state = make_state(args, train_set, optax.adam(train.triangular_lr(args.lr, total)))
    ratio = args.train_step_size / EPS
    objective = make_objective(
        train.epsilon_ramp(EPS, int(args.ramp * total)) if args.ramp > 0 else EPS,
        beta=args.beta,
        steps=args.train_steps,
        step_size=lambda eps: ratio * eps,
    )
    step = train.make_step(with_awp(args, objective, train_set))
    result = run_fit(args, state, train_set, step, eval_fn=monitor(train_set))
    final_eval(
        args,
        train.eval_logits(result.state),
        x_test,
        y_test,
        name=name(args) + awp_suffix(args),
        paper=paper(args.beta),
        train_seconds=result.train_seconds,
    )
