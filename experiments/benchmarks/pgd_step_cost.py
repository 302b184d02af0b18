"""Where a PGD step's time goes beyond the gradient: CPU time per step of loop variants.

Compares, in one process and interleaved, the process CPU time
(``time.process_time``, all threads) of: one jitted input gradient called
``k`` times; a ``fori_loop`` of ``k`` bare sign-gradient steps; PGD-k with
``keep_best=False`` and with the default best-iterate bookkeeping; and PGD-k
with the step loop unrolled 2 and 4 times. CPU time rather than wall time,
because on a loaded machine a long call is preempted where a short one often
is not.

    python experiments/benchmarks/pgd_step_cost.py [--model mlp] [--steps 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

import advjax
from advjax import losses, models


def _cpu(fn, *args) -> float:
    started = time.process_time()
    jax.block_until_ready(fn(*args))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    k = args.steps
    model = models.get_model(args.model)
    logits_fn = models.eval_logits_fn(
        model, models.init_model(model, jax.random.key(0), (28, 28, 1))
    )
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    key = jax.random.key(3)

    def grad(x, y):
        return jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x)

    def sign_steps(x, y, key):
        return jax.lax.fori_loop(0, k, lambda _, xa: xa + 0.01 * jnp.sign(grad(xa, y)), x)

    def pgd(keep_best):
        attack = advjax.pgd(0.3, steps=k, step_size=0.01, keep_best=keep_best)
        return jax.jit(lambda x, y, key: attack(logits_fn, x, y, key=key))

    fori_loop = jax.lax.fori_loop

    def unrolled(unroll):  # the library's loop traced with fori_loop(..., unroll=unroll)
        program = pgd(True)

        def run(x, y, key):
            jax.lax.fori_loop = functools.partial(fori_loop, unroll=unroll)
            try:
                return program(x, y, key)
            finally:
                jax.lax.fori_loop = fori_loop

        return run

    single = jax.jit(grad)
    programs = {
        "fori_loop of sign-gradient steps": jax.jit(sign_steps),
        "PGD keep_best=False": pgd(False),
        "PGD (keep_best=True)": pgd(True),
        "PGD, loop unrolled 2x": unrolled(2),
        "PGD, loop unrolled 4x": unrolled(4),
    }
    _cpu(single, x, y)
    for program in programs.values():
        _cpu(program, x, y, key)
    times = {"one gradient per call": [], **{name: [] for name in programs}}
    for _ in range(args.repeats):
        times["one gradient per call"].append(sum(_cpu(single, x, y) for _ in range(k)))
        for name, program in programs.items():
            times[name].append(_cpu(program, x, y, key))
    base = statistics.median(times["one gradient per call"])
    print(f"model={args.model} batch={args.batch} steps={k} jax={jax.__version__}")
    for name, values in times.items():
        value = statistics.median(values)
        print(f"  {name:34s} {1e3 * value / k:7.3f} ms CPU per step  ratio {value / base:.3f}")


if __name__ == "__main__":
    main()
