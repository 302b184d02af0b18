"""PGD-k time against k jitted input-gradient evaluations, measured side by side.

Issue target: for the Madry CNN at batch 128, time(PGD-k) / (k * time(grad)) <= 1.10.
Both are timed in the same process, interleaved, and the medians compared, so
the ratio is meaningful on a noisy machine even where absolute times are not.
On CPU the measurement runs twice, in child processes: with XLA's default
runtime and with ``--xla_cpu_use_thunk_runtime=false`` (see advjax/_xla_flags.py),
because the default runtime runs loop bodies slower than the same ops outside a
loop.

    python experiments/benchmarks/pgd_overhead.py [--model madry_cnn] [--batch 128] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import advjax
from advjax import losses, models


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def measure(args) -> None:

    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    logits_fn = models.eval_logits_fn(model, variables)
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)

    @jax.jit
    def input_gradient(x, y):
        return jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x)

    attack = jax.jit(
        lambda x, y, key: advjax.pgd(0.3, steps=args.steps, step_size=0.01)(
            logits_fn, x, y, key=key
        )
    )
    key = jax.random.key(3)
    _timed(input_gradient, x, y), _timed(attack, x, y, key)  # compile both first
    gradient_times, attack_times = [], []
    for _ in range(args.repeats):
        gradient_times.append(
            statistics.median(_timed(input_gradient, x, y) for _ in range(args.steps))
        )
        attack_times.append(_timed(attack, x, y, key))
    per_gradient = statistics.median(gradient_times)
    per_attack = statistics.median(attack_times)
    ratio = per_attack / (args.steps * per_gradient)
    print(
        f"model={args.model} batch={args.batch} steps={args.steps} "
        f"backend={jax.default_backend()} jax={jax.__version__}"
    )
    print(f"one input gradient: {1e3 * per_gradient:.2f} ms (median)")
    print(f"PGD-{args.steps}: {1e3 * per_attack:.1f} ms (median of {args.repeats})")
    print(f"ratio PGD-{args.steps} / ({args.steps} x gradient) = {ratio:.3f}  (target <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="madry_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help="measure in this process only")
    args = parser.parse_args()
    if args.child or jax.default_backend() != "cpu":
        measure(args)
        return
    from advjax._xla_flags import FLAG, OPT_OUT

    for label, flags in (("XLA default CPU runtime", ""), ("legacy CPU runtime", FLAG)):
        print(f"--- {label} (XLA_FLAGS={flags!r})", flush=True)
        env = {**os.environ, "XLA_FLAGS": flags, OPT_OUT: "1"}
        subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=False)


if __name__ == "__main__":
    main()
