"""Cost of certification relative to one forward pass, measured in one run.

Issue target: time(IBP bounds) / time(forward) <= 3 for the IBP-medium net. Also
reports IBP with specification elision (the training bounds), CROWN-IBP and full
CROWN margin bounds. Every function is compiled first, then the timings are
interleaved ``--repeats`` times and medians are compared, so the ratios are
meaningful on a shared machine even where absolute times are not. Full CROWN
runs one backward pass per pre-activation neuron and is timed on
``--crown-batch`` examples (ratio against the forward pass on the same number).

    python experiments/benchmarks/certify_overhead.py [--model ibp_medium] [--batch 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from advjax import models, train
from advjax.certify import certified_margins, interval_bounds
from advjax.train import crown_ibp_training, ibp_training


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def main(argv=None) -> None:
    """Parses flags and prints the ratios."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="ibp_medium")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--crown-batch", type=int, default=1)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--crown",
        action="store_true",
        help="also time full CROWN (one backward pass per pre-activation neuron, run in "
        "chunks of rows: on ibp_medium about 40 s and 1.8 GB per example on a 2-core CPU)",
    )
    p.add_argument(
        "--train-steps",
        action="store_true",
        help="also time one IBP and one CROWN-IBP training step (Adam, batch --batch)",
    )
    args = p.parse_args(argv)
    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    logits_fn = models.eval_logits_fn(model, variables)
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jnp.arange(args.batch) % 10
    lo, hi = jnp.clip(x - args.eps, 0, 1), jnp.clip(x + args.eps, 0, 1)
    xc, yc = x[: args.crown_batch], y[: args.crown_batch]

    def margins(method):  # one jit around the call: compiled once, not per call
        return jax.jit(lambda xs, ys: certified_margins(logits_fn, xs, ys, args.eps, method=method))

    cases = {
        "forward": (jax.jit(logits_fn), (x,)),
        "ibp": (jax.jit(interval_bounds(logits_fn)), (lo, hi)),
        "ibp-elided-margins": (margins("ibp"), (x, y)),
        "crown-ibp-margins": (margins("crown-ibp"), (x, y)),
    }
    if args.crown:
        cases["forward-crown-batch"] = (jax.jit(logits_fn), (xc,))
        cases["crown-margins"] = (margins("crown"), (xc, yc))
    compile_s = {name: _timed(fn, *a) for name, (fn, a) in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (fn, a) in cases.items():
            times[name].append(_timed(fn, *a))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"model {args.model}, batch {args.batch} (CROWN: {args.crown_batch}), eps {args.eps}")
    for name in cases:
        print(
            f"  {name:22s} median {1e3 * med[name]:9.2f} ms  (first call {compile_s[name]:.1f} s)"
        )
    fwd = med["forward"]
    print(f"IBP bounds / forward:            {med['ibp'] / fwd:7.2f}  (target <= 3)")
    print(f"IBP elided margins / forward:    {med['ibp-elided-margins'] / fwd:7.2f}")
    print(f"CROWN-IBP margins / forward:     {med['crown-ibp-margins'] / fwd:7.2f}")
    if args.crown:
        ratio = med["crown-margins"] / med["forward-crown-batch"]
        print(f"CROWN margins / forward (b={args.crown_batch}): {ratio:7.2f}")
    if args.train_steps:
        time_train_steps(model, variables, x, y, args)


def time_train_steps(model, variables, x, y, args) -> None:
    """One IBP and one CROWN-IBP (beta 0.5) training step, interleaved; prints the ratio."""
    objectives = {
        "ibp step": ibp_training(args.eps, kappa=0.5),
        "crown-ibp step": crown_ibp_training(args.eps, kappa=0.5, beta=0.5),
    }
    runs = {}
    for name, objective in objectives.items():
        state = train.TrainState.create(
            apply_fn=model.apply,
            params=jax.tree.map(jnp.array, variables["params"]),  # steps donate their state
            tx=optax.adam(1e-3),
        )
        step = train.make_step(objective)
        state, _ = step(state, (x, y), jax.random.key(0))  # compile
        runs[name] = [step, state, []]
    for _ in range(args.repeats):
        for run in runs.values():
            step, state, spent = run
            started = time.perf_counter()
            state, _ = step(state, (x, y), jax.random.key(0))
            jax.block_until_ready(state.params)
            spent.append(time.perf_counter() - started)
            run[1] = state
    med = {name: statistics.median(run[2]) for name, run in runs.items()}
    for name, seconds in med.items():
        print(f"  {name:22s} median {1e3 * seconds:9.2f} ms")
    print(f"CROWN-IBP step / IBP step:       {med['crown-ibp step'] / med['ibp step']:7.2f}")


if __name__ == "__main__":
    main()
