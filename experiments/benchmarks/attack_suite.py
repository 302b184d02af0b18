"""Attack-suite benchmarks, each measured in one run on the same model and batch.

1. ``over_epsilons`` with 5 budgets against 5 separate calls of the attack;
2. ``worst_case([...])`` (the jittable masked program and the host loop with
   ``compact=True``) against running its attacks separately on all points;
3. APGD-CE's per-iteration cost against PGD's.

Each comparison compiles every contender first, then runs them in turn,
``--repeats`` rounds, and keeps each one's fastest run: on a shared machine the
fastest run is the least disturbed one, and alternating keeps a change of load
from favouring whichever ran first.

    python experiments/benchmarks/attack_suite.py [--model fast_mnist] [--batch 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import advjax
from advjax import attacks as A
from advjax import data, models, train


def _race(fns, *args, repeats: int = 3) -> list[float]:
    """The fastest of ``repeats`` interleaved runs of each function (after compiling)."""
    for fn in fns:
        jax.block_until_ready(fn(*args))  # compile
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            started = time.perf_counter()
            jax.block_until_ready(fn(*args))
            spent.append(time.perf_counter() - started)
    return [min(spent) for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast_mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--run", default=None, help="use this run directory's model instead")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts")
    parser.add_argument(
        "--worst-eps",
        default="0.3,0.1",
        help="comma-separated budgets for the worst_case comparison (at 0.3 the first "
        "attack may break everything; a smaller one leaves work for the later ones)",
    )
    args = parser.parse_args()
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
    steps, r = args.steps, args.repeats

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

    t_sweep, t_separate = _race([sweep, separate], x, y, key, repeats=r)
    print(
        f"[1] over_epsilons (5 eps, PGD-{steps}, batch {args.batch}): {t_sweep:.3f} s; "
        f"5 separate calls: {t_separate:.3f} s; ratio {t_sweep / t_separate:.2f}",
        flush=True,
    )

    # 2. worst_case vs the attacks separately on all points.
    for eps in (float(e) for e in args.worst_eps.split(",")):
        _worst_case(logits_fn, x, y, key, eps, steps, r)

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

    times = _race([apgd_long, apgd_short, pgd_long, pgd_short], x, y, key, repeats=r)
    apgd_per = (times[0] - times[1]) / (k_long - steps)
    pgd_per = (times[2] - times[3]) / (k_long - steps)
    print(
        f"[3] per iteration (batch {args.batch}): APGD-CE {1e3 * apgd_per:.2f} ms, "
        f"PGD {1e3 * pgd_per:.2f} ms, ratio {apgd_per / pgd_per:.2f}",
        flush=True,
    )


def _worst_case(logits_fn, x, y, key, eps, steps, repeats) -> None:
    members = [
        advjax.fgsm(eps),
        A.apgd(eps, steps=steps),
        A.apgd_t(eps, steps=steps, num_targets=3),
    ]
    masked = jax.jit(lambda x, y, k: A.worst_case(members)(logits_fn, x, y, key=k))
    compacting = A.worst_case(members, compact=True)

    def compact(x, y, k):
        return compacting(logits_fn, x, y, key=k)

    each = [jax.jit(lambda x, y, k, a=a: a(logits_fn, x, y, key=k)) for a in members]

    def all_separately(x, y, k):
        return [run(x, y, jax.random.fold_in(k, i)) for i, run in enumerate(each)]

    def robust(x_adv):
        return 100 * float(jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == y))

    t_all, t_masked, t_compact = _race(
        [all_separately, masked, compact], x, y, key, repeats=repeats
    )
    left = ", ".join(f"{robust(x_adv):.1f}%" for x_adv in all_separately(x, y, key))
    print(
        f"[2] worst_case([FGSM, APGD-CE-{steps}, APGD-T-{steps}x3], eps {eps:g}): "
        f"masked (jit) {t_masked:.3f} s, robust {robust(masked(x, y, key)):.1f}%; "
        f"compact (host loop) {t_compact:.3f} s, robust {robust(compact(x, y, key)):.1f}%; "
        f"separately on all points {t_all:.3f} s (robust after each alone: {left}); "
        f"ratios masked {t_masked / t_all:.2f}, compact {t_compact / t_all:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
