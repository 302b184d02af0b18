"""PGD-k time against k jitted input-gradient evaluations, measured side by side.

Issue target: for the Madry CNN at batch 128, time(PGD-k) / (k * time(grad)) <= 1.10.
Both are timed in the same process, interleaved, and the medians compared, so
the ratio is meaningful on a noisy machine even where absolute times are not.
On CPU the measurement runs twice, in child processes: with XLA's default
runtime and with ``--xla_cpu_use_thunk_runtime=false`` (see advjax/_xla_flags.py),
because the default runtime runs loop bodies slower than the same ops outside a
loop.

    python experiments/benchmarks/pgd_overhead.py [--model madry_cnn] [--batch 128] [--steps 40]

``--model`` takes any zoo model (``mlp``, ``madry_cnn``, ``preact_resnet18`` for the
issue's three); CIFAR models get 32x32x3 inputs. ``--fast-conv-grads`` wraps the
model in ``advjax.parallel.fast_conv_grads`` (both the lone gradient and PGD).
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
from advjax import losses, models, parallel

CIFAR_MODELS = {"preact_resnet18", "wide_resnet"}


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def measure(args) -> None:
    model = models.get_model(args.model)
    shape = (32, 32, 3) if args.model in CIFAR_MODELS else (28, 28, 1)
    variables = models.init_model(model, jax.random.key(0), shape)
    x = jax.random.uniform(jax.random.key(1), (args.batch, *shape))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    key = jax.random.key(3)
    attack = advjax.pgd(0.3, steps=args.steps, step_size=0.01)
    wrap = parallel.fast_conv_grads if args.fast_conv_grads else (lambda fn: fn)

    def gradient(params, x, y):
        logits_fn = wrap(models.eval_logits_fn(model, params))
        return jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x)

    def pgd(params, x, y, key):
        return attack(wrap(models.eval_logits_fn(model, params)), x, y, key=key)

    # "arguments": parameters are inputs of the compiled programs, as in a training step.
    # "constants": parameters are closed over and baked into the programs, as when a fixed
    # model is evaluated; XLA then precomputes weight transforms for the lone gradient but
    # not inside the loop body, which shows up in the ratio.
    programs = {
        "arguments": (jax.jit(gradient), jax.jit(pgd), (variables,)),
        "constants": (
            jax.jit(lambda x, y: gradient(variables, x, y)),
            jax.jit(lambda x, y, k: pgd(variables, x, y, k)),
            (),
        ),
    }
    print(
        f"model={args.model} batch={args.batch} steps={args.steps} "
        f"fast_conv_grads={args.fast_conv_grads} "
        f"backend={jax.default_backend()} jax={jax.__version__} "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    for label, (input_gradient, pgd_attack, prefix) in programs.items():
        _timed(input_gradient, *prefix, x, y), _timed(pgd_attack, *prefix, x, y, key)
        gradient_times, attack_times = [], []
        for _ in range(args.repeats):
            gradient_times.append(
                statistics.median(_timed(input_gradient, *prefix, x, y) for _ in range(args.steps))
            )
            attack_times.append(_timed(pgd_attack, *prefix, x, y, key))
        per_gradient = statistics.median(gradient_times)
        per_attack = statistics.median(attack_times)
        ratio = per_attack / (args.steps * per_gradient)
        print(
            f"  params as {label}: gradient {1e3 * per_gradient:.2f} ms, PGD-{args.steps} "
            f"{1e3 * per_attack:.1f} ms, ratio PGD-{args.steps} / ({args.steps} x gradient) "
            f"= {ratio:.3f}  (target <= 1.10)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="madry_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fast-conv-grads", action="store_true")
    parser.add_argument("--runtimes", nargs="+", default=["default", "legacy"])
    parser.add_argument("--child", action="store_true", help="measure in this process only")
    args = parser.parse_args()
    if args.child or jax.default_backend() != "cpu":
        measure(args)
        return
    from advjax._xla_flags import FLAG, OPT_OUT

    runtimes = {"default": ("XLA default CPU runtime", ""), "legacy": ("legacy CPU runtime", FLAG)}
    for label, flags in (runtimes[name] for name in args.runtimes):
        print(f"--- {label}", flush=True)
        env = {**os.environ, "XLA_FLAGS": flags, OPT_OUT: "1"}
        subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=False)


if __name__ == "__main__":
    main()
