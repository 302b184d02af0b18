"""Every attack beside an independent reference implementation: same weights, same images.

For each model trained by a recipe on the 5,000-image MNIST training subset
(``standard``: undefended; ``pgd_at``: PGD adversarial training), on the first
``--n`` images of the official MNIST test set (no training used them), each
advjax attack runs beside its counterpart in one process:

* torchattacks 3.5 on the weights ported to PyTorch (FGSM, PGD, MI-FGSM, APGD,
  APGD-T, FAB, Square, AutoAttack, JSMA, OnePixel);
* Foolbox 3 natively on the JAX logits function (``foolbox.JAXModel``: C&W-L2,
  EAD, DDN, DeepFool, HopSkipJump, sparse L1 descent).

Every adversarial example, ours or the reference's, is judged by the same JAX
model: a point counts as broken only when it is misclassified, inside the
budget (relative tolerance 1e-5) and inside ``[0, 1]``.

Three kinds of rows:

* budget attacks: robust accuracy at the standard budgets (Linf 0.1/0.2/0.3,
  L2 1.0/1.5/2.0, L1 10/15);
* minimum-norm attacks: success rate on the correctly classified points and
  the median norm of the successful perturbations;
* black-box attacks: robust accuracy at equal query counts.

Printed per row: ours, the reference, the difference and both wall times
(compilation included); ``--out`` writes the rows as JSON.

    python experiments/benchmarks/attack_fidelity.py --runs-dir runs/fidelity [--n 500]
        [--models standard,pgd_at] [--rows fgsm,pgd,apgd-ce] [--seeds 2] [--out fidelity.json]
    python experiments/benchmarks/attack_fidelity.py --render a.json b.json   # markdown tables
    python experiments/benchmarks/attack_fidelity.py --tiny   # smoke run, untrained weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _recipe_runs import train_missing
from _torch_port import torch_fast_mnist

from advjax import attacks, data, evaluation, models, parallel
from advjax.runs import load_run

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
RECIPES = {"standard": "standard", "pgd_at": "pgd_at"}
BUDGETS = {"linf": (0.1, 0.2, 0.3), "l2": (1.0, 1.5, 2.0), "l1": (10.0, 15.0)}
TA_NORM = {"linf": "Linf", "l2": "L2"}
NORM_ORD = {"linf": np.inf, "l2": 2, "l1": 1, "l0": 0}
TOLERANCE = 1e-5


@dataclass
class Row:
    """One attack beside its reference.

    ``ours(eps)`` builds an advjax attack (or, with ``evaluation=True``, a function
    ``(logits_fn, x, y, key) -> x_adv``); ``reference(ctx, eps)`` returns the
    reference's adversarial examples ``[N, 28, 28, 1]`` as numpy.
    """

    name: str
    kind: str  # "budget" | "min_norm" | "black_box"
    norm: str
    ours: Callable
    reference: Callable
    reference_name: str
    budgets: tuple = ()
    n: int | None = None  # cap on images for costly rows
    evaluation: bool = False
    deterministic: bool = False  # one run, whatever ``--seeds`` says
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- references


def _nchw(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def torchattacks_run(make: Callable, ctx, batch: int = 250) -> np.ndarray:
    """Runs ``make(model)`` (a torchattacks attack) over ``ctx.x`` in batches; NHWC out."""
    import torch

    torch.manual_seed(ctx.seed)
    model = ctx.torch_model
    attack = make(model)
    out = []
    for i in range(0, len(ctx.x), batch):
        xb = _nchw(ctx.x[i : i + batch])
        yb = torch.from_numpy(ctx.y[i : i + batch].astype(np.int64))
        out.append(attack(xb, yb).detach().numpy().transpose(0, 2, 3, 1))
    return np.concatenate(out)


def foolbox_run(attack, ctx, *, epsilons=None, batch: int = 250, restarts: int = 1) -> np.ndarray:
    """Runs a Foolbox attack on the JAX logits function; per example the first success."""
    import foolbox

    fmodel = foolbox.JAXModel(jax.jit(ctx.logits_fn), bounds=(0.0, 1.0))
    out = np.array(ctx.x, copy=True)
    for i in range(0, len(ctx.x), batch):
        xb, yb = jnp.asarray(ctx.x[i : i + batch]), jnp.asarray(ctx.y[i : i + batch])
        best = np.array(xb)
        found = np.zeros(len(xb), bool)
        for _ in range(restarts):
            _, clipped, success = attack(fmodel, xb, yb, epsilons=epsilons)
            success = np.asarray(success).reshape(-1) & ~found
            best[success] = np.asarray(clipped)[success]
            found |= success
        out[i : i + batch] = best
    return out


# ---------------------------------------------------------------- ours


def ours_run(attack, ctx, batch: int = 250):
    """Runs an advjax attack over ``ctx.x`` in batches, sharded over the XLA devices."""
    mesh = parallel.make_mesh()
    sharded = parallel.sharded_attack(attack, mesh)
    outs, queries = [], []
    for b, i in enumerate(range(0, len(ctx.x), batch)):
        key = jax.random.fold_in(jax.random.key(ctx.seed), b)
        result = sharded(ctx.logits_fn, ctx.x[i : i + batch], ctx.y[i : i + batch], key=key)
        if isinstance(result, tuple):
            result, used = result
            queries.append(np.asarray(used))
        outs.append(np.asarray(result))
    x_adv = np.concatenate(outs)
    return (x_adv, np.concatenate(queries)) if queries else x_adv


def autoattack_run(norm: str, eps: float, ctx) -> np.ndarray:
    result = evaluation.autoattack(
        ctx.logits_fn,
        ctx.x,
        ctx.y,
        eps=eps,
        key=jax.random.key(ctx.seed),
        norm=norm,
        diagnostics=False,
    )
    return np.asarray(result.x_adv)


# ---------------------------------------------------------------- judging


def norms(x_adv, x, norm: str) -> np.ndarray:
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    if norm == "l0":
        return (np.abs(delta) > 1e-6).sum(1).astype(np.float64)
    return np.linalg.norm(delta, ord=NORM_ORD[norm], axis=1)


def judge(ctx, x_adv, norm: str, eps=None) -> np.ndarray:
    """Per example: broken (misclassified, in ``[0, 1]``, within ``eps`` when given)."""
    x_adv = np.asarray(x_adv, np.float32)
    predicted = np.asarray(ctx.predict(x_adv))
    valid = np.isfinite(x_adv).reshape(len(x_adv), -1).all(1)
    valid &= (x_adv >= -TOLERANCE).reshape(len(x_adv), -1).all(1)
    valid &= (x_adv <= 1 + TOLERANCE).reshape(len(x_adv), -1).all(1)
    if eps is not None:
        valid &= norms(x_adv, ctx.x, norm) <= eps * (1 + TOLERANCE) + TOLERANCE
    return (predicted != ctx.y) & valid


def _timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def _run_ours(row: Row, ctx, *args) -> np.ndarray:
    attack = row.ours(*args)
    out = attack(ctx) if row.evaluation else ours_run(attack, ctx)
    return out[0] if isinstance(out, tuple) else out


def _compare(row: Row, ctx, eps, *args) -> dict:
    """Robust accuracy of ours and of the reference at budget ``eps``, mean over seeds."""
    ours_acc, ref_acc, ref_only, ours_only, ours_s, ref_s = [], [], [], [], 0.0, 0.0
    seeds = 1 if row.deterministic else ctx.seeds
    for seed in range(seeds):
        seeded = replace(ctx, seed=seed)
        ours, seconds = _timed(_run_ours, row, seeded, eps, *args)
        ours_s += seconds
        ref, seconds = _timed(row.reference, seeded, eps, *args)
        ref_s += seconds
        ours_broken, ref_broken = judge(ctx, ours, row.norm, eps), judge(ctx, ref, row.norm, eps)
        ours_acc.append(100 * float(1 - ours_broken.mean()))
        ref_acc.append(100 * float(1 - ref_broken.mean()))
        ref_only.append(int((ref_broken & ~ours_broken).sum()))
        ours_only.append(int((ours_broken & ~ref_broken).sum()))
    return {
        "budget": eps,
        "ours": float(np.mean(ours_acc)),
        "reference": float(np.mean(ref_acc)),
        "ours_per_seed": ours_acc,
        "reference_per_seed": ref_acc,
        "broken_by_reference_only": ref_only,
        "broken_by_ours_only": ours_only,
        "ours_seconds": ours_s / seeds,
        "reference_seconds": ref_s / seeds,
    }


def _budget_rows(row: Row, ctx, budgets) -> list[dict]:
    return [_compare(row, ctx, eps) for eps in budgets]


def _black_box_rows(row: Row, ctx) -> list[dict]:
    eps = row.extra["eps"]
    return [dict(_compare(row, ctx, eps, queries), queries=queries) for queries in row.budgets]


def _min_norm_rows(row: Row, ctx) -> list[dict]:
    """Success rate on the correct points and median norm of the successes.

    A targeted row (``extra["targets"]``: JSMA) gives ours the targets
    ``(y + 1) mod 10`` (the reference's default) and counts reaching them. A
    randomized row runs ``ctx.seeds`` times each side: the success rate is the
    mean over seeds, the median over the successes of all seeds.
    """
    correct = np.asarray(ctx.predict(ctx.x)) == ctx.y
    targets = (ctx.y + 1) % 10 if row.extra.get("targets") else None
    seeds = 1 if row.deterministic else ctx.seeds
    out = {"ours_seconds": 0.0, "reference_seconds": 0.0}
    sizes = {"ours": [], "reference": []}
    for seed in range(seeds):
        seeded = replace(ctx, seed=seed)
        ours_ctx = seeded if targets is None else replace(seeded, y=targets)
        ours, ours_s = _timed(_run_ours, row, ours_ctx, None)
        ref, ref_s = _timed(row.reference, seeded, None)
        out["ours_seconds"] += ours_s / seeds
        out["reference_seconds"] += ref_s / seeds
        for who, x_adv in (("ours", ours), ("reference", ref)):
            broken = judge(ctx, x_adv, row.norm) & correct
            if targets is not None:
                broken &= np.asarray(ctx.predict(np.asarray(x_adv, np.float32))) == targets
            sizes[who].append(norms(x_adv, ctx.x, row.norm)[broken])
            success = 100 * float(broken.sum() / max(correct.sum(), 1))
            out.setdefault(f"{who}_success_per_seed", []).append(success)
    for who in ("ours", "reference"):
        size = np.concatenate(sizes[who])
        out[f"{who}_success"] = float(np.mean(out[f"{who}_success_per_seed"]))
        out[f"{who}_median_norm"] = float(np.median(size)) if size.size else float("nan")
    out["seeds"] = seeds
    return [out]


# ---------------------------------------------------------------- the table


def _ta():
    import torchattacks

    return torchattacks


def _fb():
    import foolbox

    return foolbox


def _pgd_step(eps, steps):
    return 2.5 * eps / steps


def rows_for(norm: str) -> list[Row]:
    """The budget rows of one norm."""
    b = BUDGETS[norm]
    if norm == "l1":
        return [
            Row(
                "apgd-ce",
                "budget",
                "l1",
                lambda eps: attacks.apgd(eps, norm="l1", steps=100),
                lambda ctx, eps: foolbox_run(
                    _fb().attacks.SparseL1DescentAttack(steps=50, random_start=True),
                    ctx,
                    epsilons=eps,
                    restarts=10,
                ),
                "foolbox SparseL1DescentAttack (50 steps, 10 restarts)",
                b,
            ),
            Row(
                "autoattack",
                "budget",
                "l1",
                lambda eps: lambda ctx: autoattack_run("l1", eps, ctx),
                lambda ctx, eps: foolbox_run(
                    _fb().attacks.SparseL1DescentAttack(steps=50, random_start=True),
                    ctx,
                    epsilons=eps,
                    restarts=10,
                ),
                "foolbox SparseL1DescentAttack (50 steps, 10 restarts)",
                b,
                evaluation=True,
            ),
        ]
    ta_norm = TA_NORM[norm]
    rows = [
        Row(
            "fgsm" if norm == "linf" else "fgm",
            "budget",
            norm,
            lambda eps: attacks.fgsm(eps, norm=norm),
            (
                (lambda ctx, eps: torchattacks_run(lambda m: _ta().FGSM(m, eps=eps), ctx))
                if norm == "linf"
                else (
                    lambda ctx, eps: foolbox_run(
                        _fb().attacks.L2FastGradientAttack(), ctx, epsilons=eps
                    )
                )
            ),
            "torchattacks FGSM" if norm == "linf" else "foolbox L2FastGradientAttack",
            b,
            deterministic=True,
        ),
        Row(
            "pgd-40",
            "budget",
            norm,
            lambda eps: attacks.pgd(eps, norm=norm, steps=40, step_size=_pgd_step(eps, 40)),
            lambda ctx, eps: torchattacks_run(
                lambda m: (_ta().PGD if norm == "linf" else _ta().PGDL2)(
                    m, eps=eps, alpha=_pgd_step(eps, 40), steps=40, random_start=True
                ),
                ctx,
            ),
            f"torchattacks {'PGD' if norm == 'linf' else 'PGDL2'} (40 steps, step 2.5 eps/40)",
            b,
        ),
        Row(
            "apgd-ce",
            "budget",
            norm,
            lambda eps: attacks.apgd(eps, norm=norm, steps=100),
            lambda ctx, eps: torchattacks_run(
                lambda m: _ta().APGD(m, norm=ta_norm, eps=eps, steps=100, loss="ce", seed=ctx.seed),
                ctx,
            ),
            "torchattacks APGD (CE, 100 steps)",
            b,
        ),
        Row(
            "apgd-t",
            "budget",
            norm,
            lambda eps: attacks.apgd_t(eps, norm=norm, steps=100),
            lambda ctx, eps: torchattacks_run(
                lambda m: _ta().APGDT(
                    m, norm=ta_norm, eps=eps, steps=100, n_classes=10, seed=ctx.seed
                ),
                ctx,
            ),
            "torchattacks APGDT (DLR, 9 targets, 100 steps)",
            b,
        ),
        Row(
            "fab-t",
            "budget",
            norm,
            lambda eps: attacks.fab(eps, norm=norm, steps=100, num_targets=9),
            lambda ctx, eps: torchattacks_run(
                lambda m: _ta().FAB(
                    m,
                    norm=ta_norm,
                    eps=eps,
                    steps=100,
                    multi_targeted=True,
                    n_classes=10,
                    seed=ctx.seed,
                ),
                ctx,
            ),
            "torchattacks FAB (targeted, 9 targets, 100 steps)",
            b,
            deterministic=True,  # one run per target from x, in both
        ),
        Row(
            "square",
            "budget",
            norm,
            lambda eps: attacks.square(eps, norm=norm, queries=5000),
            lambda ctx, eps: torchattacks_run(
                lambda m: _ta().Square(m, norm=ta_norm, eps=eps, n_queries=5000, seed=ctx.seed), ctx
            ),
            "torchattacks Square (5,000 queries, p_init 0.8)",
            b,
        ),
        Row(
            "autoattack",
            "budget",
            norm,
            lambda eps: lambda ctx: autoattack_run(norm, eps, ctx),
            lambda ctx, eps: torchattacks_run(
                lambda m: _ta().AutoAttack(
                    m, norm=ta_norm, eps=eps, version="standard", n_classes=10, seed=ctx.seed
                ),
                ctx,
            ),
            "torchattacks AutoAttack (standard)",
            b,
            evaluation=True,
        ),
    ]
    if norm == "linf":
        rows.insert(
            2,
            Row(
                "mi-fgsm",
                "budget",
                norm,
                lambda eps: attacks.mifgsm(eps, steps=10, step_size=eps / 10, decay=1.0),
                lambda ctx, eps: torchattacks_run(
                    lambda m: _ta().MIFGSM(m, eps=eps, alpha=eps / 10, steps=10, decay=1.0), ctx
                ),
                "torchattacks MIFGSM (10 steps, decay 1)",
                b,
            ),
        )
    return rows


def min_norm_rows(cw_steps: int) -> list[Row]:
    """The minimum-norm rows; all but one-pixel and HopSkipJump run once whatever ``--seeds``."""
    rows = _min_norm_rows_all(cw_steps)
    for row in rows:
        row.deterministic = row.name not in RANDOMIZED_MIN_NORM
    return rows


RANDOMIZED_MIN_NORM = {"one-pixel", "hopskipjump"}


def _min_norm_rows_all(cw_steps: int) -> list[Row]:
    fb = _fb
    return [
        Row(
            "cw-l2",
            "min_norm",
            "l2",
            lambda _: attacks.cw_l2(steps=cw_steps, binary_search_steps=9),
            lambda ctx, _: foolbox_run(
                fb().attacks.L2CarliniWagnerAttack(binary_search_steps=9, steps=cw_steps), ctx
            ),
            f"foolbox L2CarliniWagnerAttack (9 x {cw_steps} steps)",
            n=100,
        ),
        Row(
            "ead",
            "min_norm",
            "l1",
            lambda _: attacks.ead(steps=cw_steps, binary_search_steps=9, beta=1e-3),
            lambda ctx, _: foolbox_run(
                fb().attacks.EADAttack(
                    binary_search_steps=9, steps=cw_steps, regularization=1e-3, decision_rule="EN"
                ),
                ctx,
            ),
            f"foolbox EADAttack (9 x {cw_steps} steps, beta 1e-3, EN rule)",
            n=100,
        ),
        Row(
            "ddn",
            "min_norm",
            "l2",
            lambda _: attacks.ddn(steps=100),
            lambda ctx, _: foolbox_run(fb().attacks.DDNAttack(steps=100), ctx),
            "foolbox DDNAttack (100 steps)",
        ),
        Row(
            "deepfool-l2",
            "min_norm",
            "l2",
            lambda _: attacks.deepfool(norm="l2", steps=50, overshoot=0.02),
            lambda ctx, _: foolbox_run(
                fb().attacks.L2DeepFoolAttack(steps=50, overshoot=0.02, candidates=10), ctx
            ),
            "foolbox L2DeepFoolAttack (50 steps, all classes)",
        ),
        Row(
            "deepfool-linf",
            "min_norm",
            "linf",
            lambda _: attacks.deepfool(norm="linf", steps=50, overshoot=0.02),
            lambda ctx, _: foolbox_run(
                fb().attacks.LinfDeepFoolAttack(steps=50, overshoot=0.02, candidates=10), ctx
            ),
            "foolbox LinfDeepFoolAttack (50 steps, all classes)",
        ),
        Row(
            "fab-l2",
            "min_norm",
            "l2",
            lambda _: attacks.fab(norm="l2", steps=100, num_targets=None),
            lambda ctx, _: torchattacks_run(
                lambda m: _ta().FAB(m, norm="L2", eps=1e3, steps=100, n_classes=10, seed=ctx.seed),
                ctx,
            ),
            "torchattacks FAB (untargeted, 100 steps, eps 1e3)",
        ),
        Row(
            "jsma",
            "min_norm",
            "l0",
            lambda _: attacks.jsma(),
            lambda ctx, _: torchattacks_run(lambda m: _ta().JSMA(m, theta=1.0, gamma=0.145), ctx),
            "torchattacks JSMA (theta 1, gamma 0.145, target y + 1)",
            n=100,
            extra={"targets": True},
        ),
    ]


def black_box_rows() -> list[Row]:
    fb = _fb
    return [
        Row(
            "one-pixel",
            "min_norm",
            "l0",
            lambda _: attacks.one_pixel(
                1, population=399, generations=100, strategy="best1", mutation=(0.5, 1.0)
            ),
            lambda ctx, _: torchattacks_run(
                lambda m: _ta().OnePixel(m, pixels=1, steps=100, popsize=400, inf_batch=400), ctx
            ),
            "torchattacks OnePixel (SciPy DE best1bin, F in [0.5, 1), population 399, 100 steps)",
            n=100,
        ),
        Row(
            "hopskipjump",
            "min_norm",
            "l2",
            lambda _: attacks.hopskipjump(iterations=40),
            lambda ctx, _: foolbox_run(
                fb().attacks.HopSkipJumpAttack(
                    steps=40, initial_gradient_eval_steps=100, max_gradient_eval_steps=10000
                ),
                ctx,
            ),
            "foolbox HopSkipJumpAttack (L2, 40 iterations)",
            n=50,
        ),
        Row(
            "square-queries",
            "black_box",
            "linf",
            lambda eps, q: attacks.square(eps, queries=q),
            lambda ctx, eps, q: torchattacks_run(
                lambda m: _ta().Square(m, norm="Linf", eps=eps, n_queries=q, seed=ctx.seed), ctx
            ),
            "torchattacks Square (Linf, p_init 0.8)",
            budgets=(100, 1000, 5000),
            extra={"eps": 0.3},
        ),
        Row(
            "square-l2-queries",
            "black_box",
            "l2",
            lambda eps, q: attacks.square(eps, norm="l2", queries=q),
            lambda ctx, eps, q: torchattacks_run(
                lambda m: _ta().Square(m, norm="L2", eps=eps, n_queries=q, seed=ctx.seed), ctx
            ),
            "torchattacks Square (L2, p_init 0.8)",
            budgets=(100, 1000, 5000),
            extra={"eps": 2.0},
        ),
    ]


# ---------------------------------------------------------------- driver


@dataclass
class Context:
    logits_fn: Callable
    torch_model: object
    x: np.ndarray
    y: np.ndarray
    seeds: int = 1  # runs per randomized comparison, each with its own seed
    seed: int = 0

    def predict(self, x):
        outs = [
            np.asarray(jnp.argmax(self._logits(x[i : i + 500]), -1)) for i in range(0, len(x), 500)
        ]
        return np.concatenate(outs)

    def __post_init__(self):
        self._logits = jax.jit(self.logits_fn)

    def head(self, n: int) -> Context:
        return replace(self, x=self.x[:n], y=self.y[:n])


def weights_fingerprint(variables) -> str:
    """The first 12 hex digits of a SHA-256 over the weights (which training a row used)."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(variables):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()[:12]


def _print(model: str, row: Row, result: dict) -> None:
    head = f"{model:<9} {row.name:<16} {row.norm:<5}"
    if row.kind == "min_norm":
        print(
            f"{head} ours {result['ours_success']:6.2f}% median {result['ours_median_norm']:.4f} "
            f"({result['ours_seconds']:.1f} s) | ref {result['reference_success']:6.2f}% median "
            f"{result['reference_median_norm']:.4f} ({result['reference_seconds']:.1f} s)  "
            f"[{row.reference_name}]",
            flush=True,
        )
        return
    budget = f"{result['budget']:g}" + (f" q{result['queries']}" if "queries" in result else "")
    print(
        f"{head} {budget:<9} ours {result['ours']:6.2f}% ({result['ours_seconds']:6.1f} s) | "
        f"ref {result['reference']:6.2f}% ({result['reference_seconds']:6.1f} s) | "
        f"diff {result['ours'] - result['reference']:+.2f}  ref-only "
        f"{sum(result['broken_by_reference_only'])} ours-only "
        f"{sum(result['broken_by_ours_only'])}  "
        f"[{row.reference_name}]",
        flush=True,
    )


def all_rows(cw_steps: int) -> list[Row]:
    return (
        [r for norm in BUDGETS for r in rows_for(norm)]
        + min_norm_rows(cw_steps)
        + (black_box_rows())
    )


def _runs(result: dict) -> str:
    seeds = result.get("seeds", 1)
    return f"{seeds} x {result['n']}" if seeds > 1 else str(result["n"])


def to_markdown(results: list[dict]) -> str:
    """The rows as markdown tables: budget / black-box rows, then minimum-norm rows."""
    lines = [
        "| model | attack | norm | budget | advjax | reference | difference | runs | reference "
        "implementation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["kind"] == "min_norm":
            continue
        budget = f"{r['budget']:g}" + (f", {r['queries']} queries" if "queries" in r else "")
        lines.append(
            f"| {r['model']} | {r['attack']} | {r['norm']} | {budget} | {r['ours']:.2f}% | "
            f"{r['reference']:.2f}% | {r['ours'] - r['reference']:+.2f} | "
            f"{len(r['ours_per_seed'])} x {r['n']} | {r['reference_implementation']} |"
        )
    lines += [
        "",
        "| model | attack | norm | advjax: success, median norm | reference: success, median "
        "norm | images | reference implementation |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["kind"] != "min_norm":
            continue
        lines.append(
            f"| {r['model']} | {r['attack']} | {r['norm']} | {r['ours_success']:.1f}%, "
            f"{r['ours_median_norm']:.4g} | {r['reference_success']:.1f}%, "
            f"{r['reference_median_norm']:.4g} | {_runs(r)} | {r['reference_implementation']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "fidelity")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", default=",".join(RECIPES))
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--norms", default="linf,l2,l1", help="norms of the budget rows")
    parser.add_argument("--budgets", default="", help="only these budgets (comma-separated)")
    parser.add_argument("--cw-steps", type=int, default=1000)
    parser.add_argument(
        "--seeds", type=int, default=1, help="seeds per comparison (means are printed)"
    )
    parser.add_argument("--tiny", action="store_true", help="untrained weights, 8 images")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cpu-devices", type=int, default=None)
    parser.add_argument(
        "--render", nargs="+", type=Path, help="print the markdown tables of these JSON files"
    )
    args = parser.parse_args(argv)
    if args.render:
        results = [r for path in args.render for r in json.loads(path.read_text())]
        print(to_markdown(results), end="")
        return results
    parallel.use_cpu_devices(args.cpu_devices)

    if args.tiny:
        test = data.load_embedded_mnist("test")
        model = models.get_model("fast_mnist")
        variables = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
        chosen = {"untrained": (models.eval_logits_fn(model, variables), variables)}
        n = 8
    else:
        test = data.load_mnist("test", args.data_dir, download=False)
        chosen = {}
        for name in args.models.split(","):
            run = load_run(train_missing(args.runs_dir / name, RECIPES[name], args.data_dir))
            chosen[name] = (run.logits_fn, run.variables)
        n = args.n
    x = np.asarray(data.to_device(test.images[:n]), np.float32)
    y = np.asarray(test.labels[:n]).astype(np.int64)
    wanted = set(filter(None, args.rows.split(",")))
    norms_wanted = set(args.norms.split(","))
    budgets = {float(b) for b in filter(None, args.budgets.split(","))}
    rows = [
        r
        for r in all_rows(args.cw_steps)
        if (not wanted or r.name in wanted) and (r.kind != "budget" or r.norm in norms_wanted)
    ]
    print(f"{n} official MNIST test images, {jax.device_count()} XLA device(s)", flush=True)
    results = []
    for model_name, (logits_fn, variables) in chosen.items():
        ctx = Context(logits_fn, torch_fast_mnist(variables).eval(), x, y, args.seeds)
        for parameter in ctx.torch_model.parameters():
            parameter.requires_grad_(False)
        for row in rows:
            row_ctx = ctx.head(min(n, row.n)) if row.n else ctx
            if args.tiny:
                row_ctx = ctx.head(4)
            if row.kind == "budget":
                chosen_budgets = [b for b in row.budgets if not budgets or b in budgets]
                out = _budget_rows(row, row_ctx, chosen_budgets)
            elif row.kind == "min_norm":
                out = _min_norm_rows(row, row_ctx)
            else:
                out = _black_box_rows(row, row_ctx)
            for result in out:
                result.update(
                    model=model_name,
                    attack=row.name,
                    norm=row.norm,
                    kind=row.kind,
                    reference_implementation=row.reference_name,
                    n=len(row_ctx.x),
                    weights=weights_fingerprint(variables),
                )
                _print(model_name, row, result)
                results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
