"""XLA:CPU's default runtime against the legacy one on the quick start's work, side by side.

advjax used to set ``--xla_cpu_use_thunk_runtime=false`` (the legacy CPU runtime)
at start-up; it no longer does. Whether the flag pays depends on the installed jaxlib, so
this benchmark measures it on the quick start's two jobs: one PGD-10
adversarial-training step of the fast-AT MNIST net (batch 100) and the
evaluation attack (PGD-20 on 200 test images), and on the kind of loop the
test suite runs most (APGD-100 on a small MLP, batch 16). Two worker processes, one per
runtime, are started once and then asked in turn, round after round, to run
the same job (the machine's noise hits both alike); the medians and their
ratio are printed.

  python experiments/benchmarks/cpu_runtime.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FLAG = "--xla_cpu_use_thunk_runtime=false"
JOBS = ("train_step", "pgd20_eval", "small_apgd")


def worker() -> None:
    """Builds both jobs once (compiled), then times one on each request from stdin."""
    import jax
    import numpy as np
    import optax

    import advjax
    from advjax import data, models, train

    model = models.get_model("fast_mnist")
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply,
        params=jax.tree.map(np.copy, variables["params"]),  # the step donates these
        tx=optax.adam(1e-3),
    )
    train_set = data.load_embedded_mnist("train")
    test_set = data.load_embedded_mnist("test")
    batch = (data.to_device(train_set.images[:100]), np.asarray(train_set.labels[:100]))
    attack = lambda eps: advjax.pgd(eps, steps=10, step_size=0.05, keep_best=False)  # noqa: E731
    step = train.make_step(train.pgd_at(attack, 0.3))
    x_eval = data.to_device(test_set.images[:200])
    y_eval = np.asarray(test_set.labels[:200])
    logits_fn = models.eval_logits_fn(model, variables)
    evaluation = jax.jit(
        lambda x, y, key: advjax.pgd(0.3, steps=20, step_size=2.5 * 0.3 / 20)(
            logits_fn, x, y, key=key
        )
    )

    current = {"state": state}  # the step donates its input state: carry the new one on

    mlp = models.get_model("mlp")
    mlp_logits = models.eval_logits_fn(mlp, models.init_model(mlp, jax.random.key(3), (28, 28, 1)))
    # early_stop=False and labels = the MLP's own predictions: all 100 steps run on every point
    # (with the true labels an untrained MLP is wrong on ~90% at once and APGD stops early).
    apgd100 = advjax.apgd(0.3, steps=100, early_stop=False)
    small_apgd = jax.jit(lambda x, y, key: apgd100(mlp_logits, x, y, key=key))
    y_mlp = np.asarray(jax.numpy.argmax(mlp_logits(x_eval[:16]), -1))

    def run(job: str):
        if job == "small_apgd":
            return small_apgd(x_eval[:16], y_mlp, jax.random.key(4))
        if job == "train_step":
            current["state"] = step(current["state"], batch, jax.random.key(1))[0]
            return current["state"].params
        return evaluation(x_eval, y_eval, jax.random.key(2))

    for job in JOBS:  # compile outside the timings
        jax.block_until_ready(run(job))
    print("ready", flush=True)
    for line in sys.stdin:
        job = line.strip()
        started = time.perf_counter()
        jax.block_until_ready(run(job))
        print(json.dumps({"job": job, "seconds": time.perf_counter() - started}), flush=True)


def _start(flags: str) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise SystemExit(f"worker with XLA_FLAGS={flags!r} failed to start ({line!r}).")
    return process


def _ask(process: subprocess.Popen, job: str) -> float:
    process.stdin.write(job + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    workers = {"default": _start(""), "legacy": _start(FLAG)}
    times = {(name, job): [] for name in workers for job in JOBS}
    for round_index in range(args.rounds):
        order = list(workers) if round_index % 2 == 0 else list(workers)[::-1]
        for job in JOBS:
            for name in order:
                times[name, job].append(_ask(workers[name], job))
    for process in workers.values():
        process.stdin.close()
        process.wait()
    print(f"{'job':<12} {'default s':>10} {'legacy s':>10} {'legacy/default':>15}")
    for job in JOBS:
        default = statistics.median(times["default", job])
        legacy = statistics.median(times["legacy", job])
        print(f"{job:<12} {default:>10.3f} {legacy:>10.3f} {legacy / default:>15.2f}")
    print(f"({args.rounds} interleaved rounds; medians; ratio > 1: the legacy runtime is slower)")


if __name__ == "__main__":
    main()
