"""Shared pieces of the certified-training recipes (data, training loop, evaluation)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
import optax
from _shared_data import SHARED_DATA

from advjax import data, models, train
from advjax.certify import certified_markdown, certified_report
from advjax.runs import save_run_model

DATA = SHARED_DATA


def load_data(data_dir: Path = DATA):
    """The shared 5k MNIST training subset and the official 10k test set."""
    mnist = data_dir / "mnist"
    train_set = data.load_idx_pair(
        mnist / "train-5k-images-idx3-ubyte.gz", mnist / "train-5k-labels-idx1-ubyte.gz"
    )
    test_set = data.load_mnist("test", data_dir=data_dir, download=False)
    x_test = np.asarray(data.to_device(test_set.images))
    return train_set, x_test, np.asarray(test_set.labels, np.int32)


def lr_schedule(lr: float, total_steps: int) -> optax.Schedule:
    """Adam learning rate decayed by 10x at 60% and 80% of training (Gowal et al. style)."""
    return optax.piecewise_constant_schedule(
        lr, {int(0.6 * total_steps): 0.1, int(0.8 * total_steps): 0.1}
    )


def train_loop(
    model_name, objective, train_set, *, epochs, batch_size, lr, seed, log_every=1, switch=None
):
    """Trains ``model_name`` with ``objective``; returns ``(model, variables, seconds)``.

    ``switch=(epoch, later_objective)`` trains on with ``later_objective`` from
    that (0-based) epoch, with the same state and optimizer.
    """
    model = models.get_model(model_name)
    variables = models.init_model(model, jax.random.key(seed), (28, 28, 1))
    steps_per_epoch = len(train_set.labels) // batch_size
    tx = optax.adam(lr_schedule(lr, epochs * steps_per_epoch))
    state = train.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)
    step = train.make_step(objective)
    key = jax.random.key(seed + 1)
    started = time.perf_counter()
    for epoch in range(epochs):
        if switch is not None and epoch == switch[0]:
            step = train.make_step(switch[1])
        collected = []
        for x, y in data.batches(train_set, batch_size, key=key, epoch=epoch):
            state, metrics = step(state, (x, y), key)
            collected.append(metrics)
        if (epoch + 1) % log_every == 0 or epoch + 1 == epochs:
            means = {k: float(np.mean([float(m[k]) for m in collected])) for k in collected[0]}
            elapsed = time.perf_counter() - started
            print(
                f"epoch {epoch + 1}/{epochs} {elapsed:.0f}s "
                + " ".join(f"{k}={v:.4f}" for k, v in sorted(means.items())),
                flush=True,
            )
    jax.block_until_ready(state.params)
    return model, state.variables(), time.perf_counter() - started


def evaluate(model, variables, x_test, y_test, epsilons, args, methods):
    """Certified report (+ PGD check on a subset), printed and written as JSON/markdown."""
    logits_fn = models.eval_logits_fn(model, variables)
    report = certified_report(
        logits_fn,
        x_test,
        y_test,
        epsilons,
        methods=methods,
        key=jax.random.key(args.seed + 7) if args.pgd_examples > 0 else None,
        pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts,
        pgd_examples=args.pgd_examples,
        batch_size=args.eval_batch,
    )
    table = certified_markdown(report)
    print(table, flush=True)
    if args.out:
        out = Path(args.out)
        save_run_model(
            out,
            variables,
            model_name=args.model,
            input_shape=tuple(x_test.shape[1:]),
            extra={"recipe": "certified training", "eps": list(epsilons)},
        )
        (out / "certified.json").write_text(json.dumps(report, indent=2))
        (out / "certified.md").write_text(table + "\n")
    if report["consistent"] is False:
        raise SystemExit("verified <= PGD <= clean violated: a soundness bug")
    return report


def add_eval_flags(parser) -> None:
    """Flags shared by the recipes' evaluation."""
    parser.add_argument("--pgd-steps", type=int, default=100)
    parser.add_argument("--pgd-restarts", type=int, default=10)
    parser.add_argument(
        "--pgd-examples", type=int, default=1000, help="test examples attacked (0: no PGD)"
    )
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default=None,
        help="directory for certified.json/.md and the trained model (advjax.load_run)",
    )
