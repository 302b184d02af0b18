"""R restarts x E budgets in one compiled call against R x E separate calls, side by side.

Issue target: time(one call) / time(R x E calls) <= 0.8. The one call is
``over_epsilons(lambda e: with_restarts(pgd(e), R), eps)``: one program that
vmaps the attack over budgets and restarts (an effective batch of
``E x R x batch``) and keeps each example's strongest restart. The R x E calls
reuse one compiled PGD program (budget and key are arguments), as a Python
loop would. Both are timed in the same process, interleaved, medians compared.

    python experiments/benchmarks/batching.py [--model fast_mnist] [--batch 128] \
        [--restarts 4] [--epsilons 0.05 0.1 0.2 0.3] [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

import advjax
from advjax import data, models


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast_mnist")
    parser.add_argument("--run", default=None, help="a run directory's model instead")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sequential-restarts",
        action="store_true",
        help="with_restarts(batched=False): restarts in a scan instead of a vmap",
    )
    args = parser.parse_args()

    if args.run:
        logits_fn = advjax.load_run(args.run).logits_fn
        name = args.run
    else:
        model = models.get_model(args.model)
        variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
        logits_fn = models.eval_logits_fn(model, variables)
        name = args.model
    test_set = data.load_embedded_mnist("test")
    x = jnp.asarray(data.to_device(test_set.images[: args.batch]))
    y = jnp.asarray(test_set.labels[: args.batch].astype("int32"))
    key = jax.random.key(0)
    epsilons = jnp.asarray(args.epsilons, jnp.float32)
    R, E = args.restarts, len(args.epsilons)

    def make_attack(eps):
        return advjax.with_restarts(
            advjax.pgd(eps, steps=args.steps), R, batched=not args.sequential_restarts
        )

    one_call = jax.jit(
        lambda x, y, k: advjax.over_epsilons(make_attack, epsilons)(logits_fn, x, y, key=k)
    )
    single = jax.jit(lambda x, y, k, e: advjax.pgd(e, steps=args.steps)(logits_fn, x, y, key=k))

    def separate_calls(x, y, k):
        return [single(x, y, jax.random.fold_in(k, r), e) for e in epsilons for r in range(R)]

    print(
        f"model={name} batch={args.batch} PGD-{args.steps} restarts={R} budgets={E} "
        f"restarts {'sequential' if args.sequential_restarts else 'vmapped'} "
        f"backend={jax.default_backend()} devices={jax.device_count()} jax={jax.__version__} "
        f"cpus={os.cpu_count()} xla_flags={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True,
    )
    _timed(one_call, x, y, key), _timed(separate_calls, x, y, key)  # compile
    batched, looped = [], []
    for _ in range(args.repeats):
        batched.append(_timed(one_call, x, y, key))
        looped.append(_timed(separate_calls, x, y, key))
    t_batched, t_looped = statistics.median(batched), statistics.median(looped)
    print(
        f"one call ({R} restarts x {E} budgets): {t_batched:.3f} s; "
        f"{R * E} separate calls: {t_looped:.3f} s; ratio {t_batched / t_looped:.2f} "
        "(target <= 0.8)"
    )


if __name__ == "__main__":
    main()
