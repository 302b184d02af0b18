"""Shared plumbing of the CIFAR-10 recipes (GPU-sized; ``--synthetic`` for a CPU smoke test).

Data: ``advjax.data.load_cifar10(split, data_dir=--data-dir, download=not --no-download)``.
Evaluation: PGD-50 x 10 restarts, step 2/255, at Linf 8/255 on the test set
(Wong et al. 2020's evaluation), via ``advjax.evaluation.evaluate``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax  # noqa: E402
import numpy as np  # noqa: E402

import advjax  # noqa: E402
from advjax import data, evaluation, models, train  # noqa: E402

EPS = 8 / 255


def parser(description: str, *, epochs: int, model: str, lr: float, batch_size: int):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--test-size", type=int, default=10000)
    p.add_argument("--model", default=model)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--eval-restarts", type=int, default=10)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--synthetic", action="store_true", help="random images (smoke test only)")
    p.add_argument("--bf16", action="store_true", help="bf16 compute, fp32 params and loss")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def load_data(args):
    if args.synthetic:
        rng = np.random.default_rng(0)
        n_train, n_test = min(args.train_size, 512), min(args.test_size, 256)
        train_set = data.Dataset(
            rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n_train).astype(np.int32),
            "synthetic-cifar",
            10,
        )
        test_x = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
        test_y = rng.integers(0, 10, n_test).astype(np.int32)
    else:
        kwargs = {"data_dir": args.data_dir, "download": not args.no_download}
        train_set = data.load_cifar10("train", **kwargs)
        test_set = data.load_cifar10("test", **kwargs)
        order = np.random.default_rng(0).permutation(len(train_set))
        train_set = train_set.subset(np.sort(order[: min(args.train_size, len(train_set))]))
        n_test = min(args.test_size, len(test_set))
        test_x, test_y = test_set.images[:n_test], test_set.labels[:n_test]
    return train_set, data.to_device(test_x), np.asarray(test_y, np.int32)


def make_state(args, train_set, tx, **model_kwargs):
    model = models.get_model(args.model, **model_kwargs)
    variables = models.init_model(model, jax.random.key(args.seed), train_set.image_shape)
    apply_fn = train.mixed_precision(model.apply) if args.bf16 else model.apply
    return train.TrainState.create(
        apply_fn=apply_fn,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=tx,
    )


def run(args, state, train_set, objective, x_test, y_test, *, name: str, paper: str):
    out = args.out
    monitor_x, monitor_y = x_test[:256], y_test[:256]
    eval_fn = train.robust_eval_fn(
        monitor_x, monitor_y, advjax.pgd(EPS, steps=10, step_size=2 / 255), batch_size=256
    )
    result = train.fit(
        state,
        train_set,
        train.make_step(objective),
        epochs=args.epochs,
        batch_size=args.batch_size,
        key=jax.random.key(args.seed + 1),
        eval_fn=eval_fn,
        checkpoint_dir=f"{out}/checkpoints" if out else None,
        metrics_path=f"{out}/metrics.jsonl" if out else None,
        progress=not args.no_progress,
    )
    attack = {
        f"pgd{args.eval_steps}x{args.eval_restarts}": lambda e: advjax.pgd(
            e, steps=args.eval_steps, step_size=2 / 255, restarts=args.eval_restarts
        )
    }
    started = time.perf_counter()
    report = evaluation.evaluate(
        train.eval_logits(result.state), x_test, y_test, attack, [EPS], key=jax.random.key(7)
    )
    print(evaluation.format_table(report))
    results = {
        "recipe": name,
        "clean_acc": round(100 * report.clean_accuracy, 2),
        "robust_acc": round(100 * report.worst_case.robust_accuracy[0], 2),
        "train_seconds": round(result.train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "synthetic_data": bool(args.synthetic),
    }
    print(f"\n{name}: measured {json.dumps(results)}")
    print(f"{name}: paper       {paper}")
    return results
