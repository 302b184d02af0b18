"""Time of one PGD-k adversarial training step against one standard training step.

Issue target: for the Madry CNN (batch 128), time(PGD-k step) / time(standard
step) <= (k + 1) * 1.05, i.e. the adversarial step costs no more than its k
attack gradients plus the training gradient. Both steps are built with
``advjax.train.make_step``, compiled first, then timed interleaved in the same
process; medians are compared, so the ratio holds on a noisy shared machine.

    python experiments/benchmarks/train_step_overhead.py [--model madry_cnn] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import advjax  # noqa: E402
from advjax import models, train  # noqa: E402


def _state(model, variables):
    variables = jax.tree.map(jnp.copy, variables)  # each state owns its (donated) buffers
    return train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats"),
        tx=optax.sgd(0.01, momentum=0.9),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="madry_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="k, the PGD steps")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    k = args.steps
    steps = {
        "standard": train.make_step(train.standard()),
        f"pgd{k}": train.make_step(
            train.pgd_at(lambda e: advjax.pgd(e, steps=k, step_size=0.01, keep_best=False), 0.3)
        ),
    }
    states = {name: _state(model, variables) for name in steps}
    key = jax.random.key(3)

    def timed(name) -> float:
        started = time.perf_counter()
        states[name], metrics = steps[name](states[name], (x, y), key)
        jax.block_until_ready((states[name].params, metrics))
        return time.perf_counter() - started

    for name in steps:  # compile and warm up
        timed(name), timed(name)
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name in steps:
            # a few standard steps per PGD step, so both medians see similar noise
            times[name].append(
                statistics.median(timed(name) for _ in range(3 if name == "standard" else 1))
            )
    standard = statistics.median(times["standard"])
    adversarial = statistics.median(times[f"pgd{k}"])
    ratio = adversarial / standard
    print(
        f"model={args.model} batch={args.batch} k={k} backend={jax.default_backend()} "
        f"jax={jax.__version__}"
    )
    print(f"standard training step: {1e3 * standard:.1f} ms (median)")
    print(f"PGD-{k} training step: {1e3 * adversarial:.1f} ms (median)")
    target = (k + 1) * 1.05
    verdict = "ok" if ratio <= target else "ABOVE TARGET"
    print(f"ratio PGD-{k} step / standard step = {ratio:.2f}  (target <= {target:.2f}: {verdict})")


if __name__ == "__main__":
    main()
