"""PGD-k time against k jitted input-gradient evaluations, measured side by side.

Issue target: time(PGD-k) / (k * time(grad)) <= 1.05 (the Madry CNN at batch
128, the MLP, PreAct ResNet-18). Both are timed in the same process,
interleaved, and the medians compared, so the ratio is meaningful on a noisy
machine even where absolute times are not. Three ratios are printed, with
three denominators: ``median`` is k times the median of k single gradient
calls (the original measure); ``block`` is the wall time of the same k calls
made back to back (each waited for); ``cpu`` compares process CPU time
(``time.process_time``, all threads) of PGD-k and of the k back-to-back calls.
On a loaded machine ``median`` favours the gradient: a sub-millisecond call
often runs between preemptions and the median keeps those runs, while a
PGD-k call of tens of milliseconds is always preempted. ``block`` and ``cpu``
put both sides under the same conditions.
On CPU the measurement runs twice, in child processes: with XLA's default
runtime and with ``--xla_cpu_use_thunk_runtime=false`` (the legacy runtime),
because the default runtime runs loop bodies slower than the same ops outside a
loop.

    python experiments/benchmarks/pgd_overhead.py [--model madry_cnn] [--batch 128] [--steps 40]

``--model`` takes any zoo model (``mlp``, ``madry_cnn``, ``preact_resnet18`` for the
issue's three); CIFAR models get 32x32x3 inputs. The model is
``advjax.models.eval_logits_fn``'s default (on CPU: wrapped in
``advjax.backend.fast_conv_grads``); ``--plain-conv-grads`` opts out and
``--fast-conv-grads`` forces the wrapper on any backend (both the lone gradient
and PGD use the same function).
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

CIFAR_MODELS = {"preact_resnet18", "wide_resnet"}

LEGACY_RUNTIME = "--xla_cpu_use_thunk_runtime=false"


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def _timed_block(fn, args, calls: int) -> tuple[float, float, list[float]]:
    """Wall and CPU time of ``calls`` calls made one after another, and each call's wall time."""
    singles = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        singles.append(_timed(fn, *args))
    return time.perf_counter() - wall, time.process_time() - cpu, singles


def measure(args) -> None:
    model = models.get_model(args.model)
    shape = (32, 32, 3) if args.model in CIFAR_MODELS else (28, 28, 1)
    variables = models.init_model(model, jax.random.key(0), shape)
    x = jax.random.uniform(jax.random.key(1), (args.batch, *shape))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    key = jax.random.key(3)
    attack = advjax.pgd(0.3, steps=args.steps, step_size=0.01)
    conv = True if args.fast_conv_grads else (False if args.plain_conv_grads else None)

    def gradient(params, x, y):
        logits_fn = models.eval_logits_fn(model, params, fast_conv_grads=conv)
        return jax.grad(lambda xx: jnp.sum(losses.ce(logits_fn(xx), y)))(x)

    def pgd(params, x, y, key):
        return attack(models.eval_logits_fn(model, params, fast_conv_grads=conv), x, y, key=key)

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
        f"fast_conv_grads={'default' if conv is None else conv} "
        f"backend={jax.default_backend()} jax={jax.__version__} "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    for label in args.params:
        input_gradient, pgd_attack, prefix = programs[label]
        _timed(input_gradient, *prefix, x, y), _timed(pgd_attack, *prefix, x, y, key)
        medians, blocks, block_cpus, attacks, attack_cpus = [], [], [], [], []
        for _ in range(args.repeats):
            block, block_cpu, singles = _timed_block(input_gradient, (*prefix, x, y), args.steps)
            medians.append(statistics.median(singles))
            blocks.append(block)
            block_cpus.append(block_cpu)
            cpu = time.process_time()
            attacks.append(_timed(pgd_attack, *prefix, x, y, key))
            attack_cpus.append(time.process_time() - cpu)
        per_gradient = statistics.median(medians)
        per_attack = statistics.median(attacks)
        k = args.steps
        print(
            f"  params as {label}: gradient {1e3 * per_gradient:.2f} ms (median), "
            f"{k} gradients {1e3 * statistics.median(blocks):.1f} ms (back to back), "
            f"PGD-{k} {1e3 * per_attack:.1f} ms; ratio PGD-{k} / ({k} x gradient) "
            f"median {per_attack / (k * per_gradient):.3f}, "
            f"block {per_attack / statistics.median(blocks):.3f}, "
            f"cpu {statistics.median(attack_cpus) / statistics.median(block_cpus):.3f} "
            "(target <= 1.05)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="madry_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fast-conv-grads", action="store_true")
    parser.add_argument("--plain-conv-grads", action="store_true")
    parser.add_argument(
        "--params",
        nargs="+",
        default=["arguments", "constants"],
        choices=["arguments", "constants"],
    )
    parser.add_argument("--runtimes", nargs="+", default=["default", "legacy"])
    parser.add_argument("--child", action="store_true", help="measure in this process only")
    args = parser.parse_args()
    if args.child or jax.default_backend() != "cpu":
        measure(args)
        return
    runtimes = {
        "default": ("XLA default CPU runtime", ""),
        "legacy": ("legacy CPU runtime", LEGACY_RUNTIME),
    }
    for label, flags in (runtimes[name] for name in args.runtimes):
        print(f"--- {label}", flush=True)
        env = {**os.environ, "XLA_FLAGS": flags}
        subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=False)


if __name__ == "__main__":
    main()
