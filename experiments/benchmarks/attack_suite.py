"""Attack-suite benchmarks, each measured in one run on the same model and batch.

1. ``over_epsilons`` with 5 budgets against 5 separate calls of the attack;
2. ``worst_case([...])`` against running its attacks separately on all points;
3. APGD-CE's per-iteration cost against PGD's.

    python experiments/benchmarks/attack_suite.py [--model fast_mnist] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import advjax
from advjax import attacks as A
from advjax import data, models, train
from advjax._xla_flags import use_fast_cpu_loops


def _timed(fn, *args, repeats=3) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast_mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--run", default=None, help="use this run directory's model instead")
    args = parser.parse_args()
    use_fast_cpu_loops()
    if args.run:
        logits_fn = advjax.load_run(args.run).logits_fn
    else:
        logits_fn = _train(args)
    _benchmark(logits_fn, args)


def _train(args):
    train_set = data.load_embedded_mnist("train")
    model = models.get_model(args.model)
    variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=optax.adam(1e-3)
    )
    fitted = train.fit(
        state,
        train_set,
        train.make_step(train.standard()),
        epochs=args.train_epochs,
        batch_size=50,
        key=jax.random.key(1),
        progress=False,
    )
    return models.eval_logits_fn(model, fitted.state.variables())


def _benchmark(logits_fn, args) -> None:
    test_set = data.load_embedded_mnist("test")
    x = jnp.asarray(data.to_device(test_set.images[: args.batch]))
    y = jnp.asarray(test_set.labels[: args.batch].astype("int32"))
    key = jax.random.key(2)
    steps = args.steps

    # 1. over_epsilons vs separate calls.
    epsilons = jnp.array([0.05, 0.1, 0.15, 0.2, 0.3])
    sweep = jax.jit(
        lambda x, y, k: A.over_epsilons(lambda e: advjax.pgd(e, steps=steps), epsilons)(
            logits_fn, x, y, key=k
        )
    )
    single = jax.jit(lambda x, y, k, e: advjax.pgd(e, steps=steps)(logits_fn, x, y, key=k))

    def separate(x, y, k):
        return [single(x, y, k, e) for e in epsilons]

    t_sweep, t_separate = _timed(sweep, x, y, key), _timed(separate, x, y, key)
    print(
        f"[1] over_epsilons (5 eps, PGD-{steps}, batch {args.batch}): {t_sweep:.3f} s; "
        f"5 separate calls: {t_separate:.3f} s; ratio {t_sweep / t_separate:.2f}"
    )

    # 2. worst_case vs the attacks separately on all points.
    members = [
        advjax.fgsm(0.3),
        A.apgd(0.3, steps=steps),
        A.apgd_t(0.3, steps=steps, num_targets=3),
    ]
    combined = jax.jit(lambda x, y, k: A.worst_case(members)(logits_fn, x, y, key=k))
    each = [jax.jit(lambda x, y, k, a=a: a(logits_fn, x, y, key=k)) for a in members]

    def all_separately(x, y, k):
        return [run(x, y, jax.random.fold_in(k, i)) for i, run in enumerate(each)]

    t_worst, t_all = _timed(combined, x, y, key), _timed(all_separately, x, y, key)
    robust = float(jnp.mean(jnp.argmax(logits_fn(combined(x, y, key)), -1) == y))
    print(
        f"[2] worst_case([FGSM, APGD-CE-{steps}, APGD-T-{steps}x3]): {t_worst:.3f} s "
        f"(robust {100 * robust:.1f}%); separately on all points: {t_all:.3f} s; "
        f"ratio {t_worst / t_all:.2f}"
    )

    # 3. APGD-CE per-iteration cost vs PGD (no early stop, so all iterations run).
    k_long = 4 * steps
    apgd_short = jax.jit(
        lambda x, y, k: A.apgd(0.3, steps=steps, early_stop=False)(logits_fn, x, y, key=k)
    )
    apgd_long = jax.jit(
        lambda x, y, k: A.apgd(0.3, steps=k_long, early_stop=False)(logits_fn, x, y, key=k)
    )
    pgd_short = jax.jit(lambda x, y, k: advjax.pgd(0.3, steps=steps)(logits_fn, x, y, key=k))
    pgd_long = jax.jit(lambda x, y, k: advjax.pgd(0.3, steps=k_long)(logits_fn, x, y, key=k))
    apgd_per = (_timed(apgd_long, x, y, key) - _timed(apgd_short, x, y, key)) / (k_long - steps)
    pgd_per = (_timed(pgd_long, x, y, key) - _timed(pgd_short, x, y, key)) / (k_long - steps)
    print(
        f"[3] per iteration (batch {args.batch}): APGD-CE {1e3 * apgd_per:.2f} ms, "
        f"PGD {1e3 * pgd_per:.2f} ms, ratio {apgd_per / pgd_per:.2f}"
    )


if __name__ == "__main__":
    main()
