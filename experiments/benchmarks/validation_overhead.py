"""The cost of the validation layer on PGD-40, measured side by side in one process.

Issue 14's target: PGD-40 on the Madry CNN at batch 128 is at most 3% slower with
the validation layer (input checks alive under ``jax.jit``, labels, class count,
and the output invariants: finite, in the ball, in the box, rounding towards the
input) than the same loop without it. Both run the same compiled PGD loop:
``guarded`` is ``advjax.pgd(...)`` as users call it, ``bare`` its ``.inner`` loop
called directly. Runs are interleaved and the medians compared, so the ratio
means something on a noisy machine.

    python experiments/benchmarks/validation_overhead.py [--model madry_cnn] [--batch 128]
        [--steps 40] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import advjax
from advjax import models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="madry_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    logits_fn = models.eval_logits_fn(model, variables)
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    eps, step_size = 0.3, 0.01

    attack = advjax.pgd(eps, steps=args.steps, step_size=step_size)
    guarded = jax.jit(attack, static_argnums=0)
    # attack.inner: the same compiled loop with no validation and no output enforcement.
    bare = jax.jit(attack.inner, static_argnums=0)
    runs = {"guarded": guarded, "bare": bare}
    for run in runs.values():  # compile and warm up
        run(logits_fn, x, y, key=jax.random.key(3)).block_until_ready()
    times = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run(logits_fn, x, y, key=jax.random.key(repeat)).block_until_ready()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    difference = float(
        jnp.max(
            jnp.abs(
                guarded(logits_fn, x, y, key=jax.random.key(0))
                - bare(logits_fn, x, y, key=jax.random.key(0))
            )
        )
    )
    print(
        f"{args.model}, batch {args.batch}, PGD-{args.steps}, {args.repeats} interleaved runs, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    for name, value in medians.items():
        print(f"  {name:8s} median {1e3 * value:9.1f} ms")
    print(f"  ratio guarded / bare: {medians['guarded'] / medians['bare']:.3f} (target <= 1.03)")
    # The guard only rounds towards the input where float32 rounding went past the budget.
    print(f"  largest difference between their adversarial examples: {difference:.3g}")


if __name__ == "__main__":
    main()
