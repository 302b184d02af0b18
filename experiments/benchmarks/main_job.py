"""The quick start's two hot loops, advjax against PyTorch, side by side on the same cores.

The main job (``python3 -m advjax quickstart``) spends its time in two loops
on the fast-adversarial-training MNIST net (Wong, Rice & Kolter 2020,
arXiv:2001.03994): the PGD-10 adversarial-training step (eps 0.3, step 0.05,
random start, Adam, batch 100) and the PGD-20 evaluation attack (step
2.5 * eps / 20, batch 500). Both run here in three ways, interleaved in one
process, with the same weights (ported from the Flax model; the logits are
checked to agree before anything is timed):

* **torch**: hand-written PyTorch loops (eager, ``torch.autograd.grad`` per
  step), ``torch.set_num_threads(N)``;
* **advjax, one device**: ``train.make_step`` / ``jax.jit(pgd)``, XLA's
  intra-op threads spread over the cores;
* **advjax, data-parallel**: one XLA CPU device per core
  (``parallel.use_cpu_devices``), the batch split over them
  (``parallel.sharded_step`` / ``parallel.sharded_attack``): what the
  ``advjax`` command, ``train.fit`` and ``evaluate`` do by default on CPU.

The process is pinned to ``--threads`` cores (``os.sched_setaffinity``) before
either framework starts, so both get the same cores. Medians over
``--repeats`` interleaved rounds; ratios are torch time / advjax time (above 1:
advjax is faster). Without torch installed only the advjax rows are printed.

    python experiments/benchmarks/main_job.py [--threads N] [--repeats 7] [--tiny]

``--tiny`` (batch 8/16, 2 steps) is the smoke test the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _torch_port import torch_fast_mnist, torch_pgd

EPS = 0.3
TRAIN_STEP_SIZE = 0.05


def _torch_train_step(model, optimizer, x, y, *, steps, generator):
    """One PGD-AT step: attack the batch, then a step of Adam on the adversarial loss."""
    import torch

    x_adv = torch_pgd(
        model, x, y, eps=EPS, steps=steps, step_size=TRAIN_STEP_SIZE, generator=generator
    )
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x_adv), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _interleaved_medians(contenders: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds per contender, each timed once per round, rounds interleaved."""
    for fn in contenders.values():  # compile / warm up
        fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _advjax_contenders(args, variables, x_train, y_train, x_test, y_test):
    """The advjax train steps and attacks, on one device and data-parallel over all."""
    import jax
    import optax

    from advjax import models, parallel, train
    from advjax.attacks import pgd

    model = models.get_model("fast_mnist")
    objective = train.pgd_at(
        lambda e: pgd(e, steps=args.train_steps, step_size=TRAIN_STEP_SIZE, keep_best=False), EPS
    )
    logits_fn = models.eval_logits_fn(model, variables)
    attack = pgd(EPS, steps=args.eval_steps, step_size=2.5 * EPS / args.eval_steps, keep_best=False)
    mesh = parallel.make_mesh()
    one_device = parallel.make_mesh(jax.devices()[:1])
    contenders = {}
    for tag, where in (("advjax 1 device", one_device), (f"advjax {mesh.size} devices", mesh)):
        state = train.TrainState.create(
            apply_fn=model.apply,
            params=jax.tree.map(lambda a: a.copy(), variables["params"]),
            tx=optax.adam(1e-3),
        )
        holder = {"state": parallel.shard_train_state(state, where)}
        step = parallel.sharded_step(train.make_step(objective), where)
        run_attack = parallel.sharded_attack(attack, where)

        def train_step(step=step, holder=holder):
            holder["state"], metrics = step(holder["state"], (x_train, y_train), jax.random.key(1))
            metrics["loss"].block_until_ready()

        def eval_attack(run_attack=run_attack):
            run_attack(logits_fn, x_test, y_test, key=jax.random.key(2)).block_until_ready()

        contenders[tag] = (train_step, eval_attack)
    return contenders


def _torch_contenders(args, variables, x_train, y_train, x_test, y_test):
    """The PyTorch train step and attack, or ``{}`` when torch is not installed."""
    try:
        import torch
    except ImportError:
        return {}
    import jax
    import numpy as np

    from advjax import models

    torch.set_num_threads(args.threads)
    model = torch_fast_mnist(variables)
    reference = np.asarray(models.eval_logits_fn(models.get_model("fast_mnist"), variables)(x_test))
    nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    xt_train, xt_test = nchw(x_train), nchw(x_test)
    yt_train, yt_test = (torch.from_numpy(np.asarray(y, np.int64)) for y in (y_train, y_test))
    with torch.no_grad():
        gap = float(np.abs(model(xt_test).numpy() - reference).max())
    if gap > 1e-3:
        raise RuntimeError(f"the PyTorch port's logits differ from the Flax model's by {gap}")
    print(f"PyTorch port: logits agree with the Flax model's to {gap:.1e}", flush=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    del jax

    def train_step():
        _torch_train_step(
            model, optimizer, xt_train, yt_train, steps=args.train_steps, generator=generator
        )

    def eval_attack():
        torch_pgd(
            model,
            xt_test,
            yt_test,
            eps=EPS,
            steps=args.eval_steps,
            step_size=2.5 * EPS / args.eval_steps,
            generator=generator,
        )

    return {"torch": (train_step, eval_attack)}


def measure(args) -> dict:
    """Pins the process, starts JAX with one CPU device per pinned core, times both loops."""
    cores = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cores)
    import jax

    from advjax import parallel

    parallel.use_cpu_devices(len(cores))
    import numpy as np

    from advjax import data, models

    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    train_set, test_set = data.load_embedded_mnist("train"), data.load_embedded_mnist("test")
    x_train = np.asarray(data.to_device(train_set.images[: args.train_batch]))
    y_train = train_set.labels[: args.train_batch].astype(np.int32)
    x_test = np.asarray(data.to_device(test_set.images[: args.eval_batch]))
    y_test = test_set.labels[: args.eval_batch].astype(np.int32)
    inputs = (variables, x_train, y_train, x_test, y_test)
    contenders = {
        **_torch_contenders(args, *inputs),
        **_advjax_contenders(args, *inputs),
    }
    print(
        f"pinned to cores {cores}; jax {jax.__version__} with {len(jax.devices())} CPU devices",
        flush=True,
    )
    train_ms = _interleaved_medians({k: v[0] for k, v in contenders.items()}, args.repeats)
    eval_ms = _interleaved_medians({k: v[1] for k, v in contenders.items()}, args.repeats)
    results = {
        "cores": len(cores),
        "train_step": f"PGD-{args.train_steps} AT step, batch {args.train_batch}",
        "eval_attack": f"PGD-{args.eval_steps}, batch {args.eval_batch}",
        "train_ms": train_ms,
        "eval_ms": eval_ms,
    }
    print(f"\n| contender | {results['train_step']} (ms) | {results['eval_attack']} (ms) |")
    print("| --- | --- | --- |")
    for name in contenders:
        row = f"| {name} | {train_ms[name]:.1f} | {eval_ms[name]:.1f} |"
        if "torch" in train_ms and name != "torch":
            row += (
                f" torch/advjax: train {train_ms['torch'] / train_ms[name]:.2f}x, "
                f"eval {eval_ms['torch'] / eval_ms[name]:.2f}x"
            )
        print(row)
    print(json.dumps(results))
    return results


def main(argv: list[str] | None = None) -> dict:
    """Parses the flags and runs :func:`measure`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.repeats, args.train_batch, args.eval_batch = 1, 8, 16
        args.train_steps, args.eval_steps = 2, 2
    return measure(args)


if __name__ == "__main__":
    main()
