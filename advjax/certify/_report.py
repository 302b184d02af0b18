"""Certified accuracy beside clean and PGD accuracy, as a dict and a markdown table."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from advjax.attacks import pgd, predicted_class
from advjax.certify._certified import METHODS, certified_accuracy
from advjax.data import map_batches

__all__ = ["certified_report", "certified_markdown"]


def certified_report(
    logits_fn: Callable,
    x,
    y,
    epsilons: Sequence[float],
    *,
    methods: Sequence[str] = ("ibp",),
    key: jax.Array | None = None,
    pgd_steps: int = 100,
    pgd_restarts: int = 10,
    pgd_examples: int | None = None,
    batch_size: int = 500,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    return_masks: bool = False,
    progress: bool = False,
) -> dict:
    """Clean, PGD and certified (verified) L-inf accuracy per epsilon and method.

    Every certified example must survive any attack, so on the examples attacked
    the report checks ``verified <= PGD <= clean`` per example: ``violations``
    counts examples certified by some method yet misclassified by PGD (must be
    0; a positive count is a soundness bug) and ``consistent`` is the verdict.
    An example counts as PGD-robust when it is classified correctly both clean
    and under attack.

    Args:
        logits_fn: Batched eval-mode model ``x[B, ...] -> logits[B, K]``.
        x: Inputs ``(N, ...)`` in ``[clip_min, clip_max]``.
        y: Integer labels ``(N,)``.
        epsilons: L-inf radii.
        methods: Certification methods among ``"ibp"``, ``"crown"``,
            ``"crown-ibp"``.
        key: PRNG key for PGD; ``None`` skips the attack.
        pgd_steps: PGD steps (step size ``2.5 * eps / steps``).
        pgd_restarts: Random restarts per example (the strongest is kept).
        pgd_examples: Attack only the first ``pgd_examples`` (``None``: all); the
            consistency check is made on those.
        batch_size: Examples per compiled call.
        clip_min: Lower end of the valid input range.
        clip_max: Upper end of the valid input range.
        return_masks: Also return the per-example flags under ``"masks"``:
            ``correct`` ``[N]``, ``certified`` ``{method: [E, N]}`` and
            ``pgd_robust`` ``[E, n_attacked]`` (numpy bool arrays; not JSON).
        progress: Show a progress bar over the batches of each bound and attack.

    Returns:
        A JSON-serialisable dict with ``n``, ``clean_acc``, ``epsilons``,
        ``certified`` (``{method: [acc per eps]}``), ``certified_any`` (per eps,
        the share certified by at least one method: each is sound, so their
        union is too), ``pgd`` (``{"n", "acc",
        "clean_acc", "certified": {method: [acc on the attacked subset]}}`` or
        ``None``), ``violations`` (per eps), ``consistent`` and ``seconds``.

    Raises:
        ValueError: For an unknown method or empty ``epsilons``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.stack([x[:, 0], 1.0 - x[:, 0]], axis=1)
        >>> x, y = jnp.array([[0.9], [0.55], [0.2]]), jnp.array([0, 0, 0])
        >>> r = certified_report(f, x, y, [0.1], key=jax.random.key(0), pgd_steps=10,
        ...                      pgd_restarts=2)
        >>> r["clean_acc"], r["certified"]["ibp"], r["pgd"]["acc"], r["consistent"]
        (0.6666666666666666, [0.3333333333333333], [0.3333333333333333], True)
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"Unknown method {m!r}; valid methods: {list(METHODS)}")
    epsilons = [float(e) for e in epsilons]
    if not epsilons:
        raise ValueError("epsilons must not be empty")
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = int(x.shape[0])
    seconds: dict[str, float] = {}

    over_data = functools.partial(map_batches, batch_size=min(batch_size, max(n, 1)))
    t = time.perf_counter()
    predict = jax.jit(lambda xb: predicted_class(logits_fn(xb)))
    correct = over_data(predict, [x]) == np.asarray(y)
    seconds["clean"] = time.perf_counter() - t

    eps_vec = jnp.asarray(epsilons, x.dtype)
    certified: dict[str, np.ndarray] = {}
    for m in methods:
        t = time.perf_counter()
        cert_fn = jax.jit(
            lambda xb, yb, m=m: (
                certified_accuracy(
                    logits_fn, xb, yb, eps_vec, method=m, clip_min=clip_min, clip_max=clip_max
                ).T
            )
        )
        cert = over_data(cert_fn, [x, y], progress=m if progress else False).T  # (E, N)
        certified[m] = cert
        seconds[f"certify/{m}"] = time.perf_counter() - t

    report: dict = {
        "n": n,
        "clean_acc": float(correct.mean()),
        "epsilons": epsilons,
        "certified": {m: [float(c.mean()) for c in certified[m]] for m in methods},
        "certified_any": [float(c.mean()) for c in np.any(np.stack(list(certified.values())), 0)]
        if certified
        else None,
        "pgd": None,
        "violations": None,
        "consistent": None,
        "seconds": seconds,
    }
    if return_masks:
        report["masks"] = {"correct": correct, "certified": certified, "pgd_robust": None}
    if key is None:
        return report

    n_att = n if pgd_examples is None else min(int(pgd_examples), n)
    t = time.perf_counter()
    robust = []
    for i, eps in enumerate(epsilons):
        attack = pgd(
            eps, steps=pgd_steps, restarts=pgd_restarts, clip_min=clip_min, clip_max=clip_max
        )
        survives = jax.jit(
            lambda xb, yb, k, attack=attack: (
                predicted_class(logits_fn(attack(logits_fn, xb, yb, key=k))) == yb
            )
        )
        robust.append(
            map_batches(
                survives,
                [x[:n_att], y[:n_att]],
                batch_size=min(batch_size, max(n_att, 1)),
                key=jax.random.fold_in(key, i),
                progress=f"pgd eps {eps:g}" if progress else False,
            )
        )
        robust[-1] &= correct[:n_att]
    seconds["pgd"] = time.perf_counter() - t
    robust = np.stack(robust)  # (E, n_att)
    any_cert = np.any(np.stack([c[:, :n_att] for c in certified.values()]), axis=0)
    violations = (any_cert & ~robust).sum(axis=1) + (robust & ~correct[:n_att]).sum(axis=1)
    report["pgd"] = {
        "n": n_att,
        "steps": pgd_steps,
        "restarts": pgd_restarts,
        "acc": [float(r.mean()) for r in robust],
        "clean_acc": float(correct[:n_att].mean()),
        "certified": {m: [float(c[:n_att].mean()) for c in certified[m]] for m in methods},
    }
    report["violations"] = [int(v) for v in violations]
    report["consistent"] = bool(np.all(violations == 0))
    if return_masks:
        report["masks"]["pgd_robust"] = robust
    return report


def certified_markdown(report: dict) -> str:
    """A markdown table of a :func:`certified_report`: one row per epsilon.

    Example:
        >>> r = {"n": 2, "clean_acc": 1.0, "epsilons": [0.1], "certified": {"ibp": [0.5]},
        ...      "pgd": None, "consistent": None}
        >>> print(certified_markdown(r))
        | eps | clean | certified (ibp) |
        |---|---|---|
        | 0.1 | 100.00% | 50.00% |
    """
    methods = list(report["certified"])
    pgd = report.get("pgd")
    head = ["eps", "clean"]
    if pgd:
        head.append(f"PGD-{pgd['steps']}x{pgd['restarts']} (n={pgd['n']})")
    head += [f"certified ({m})" for m in methods]
    union = report.get("certified_any") if len(methods) > 1 else None
    if union:
        head.append("certified (any)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, eps in enumerate(report["epsilons"]):
        row = [f"{eps:g}", f"{100 * report['clean_acc']:.2f}%"]
        if pgd:
            row.append(f"{100 * pgd['acc'][i]:.2f}%")
        row += [f"{100 * report['certified'][m][i]:.2f}%" for m in methods]
        if union:
            row.append(f"{100 * union[i]:.2f}%")
        lines.append("| " + " | ".join(row) + " |")
    if report.get("consistent") is not None:
        verdict = "holds" if report["consistent"] else "VIOLATED"
        lines.append("")
        lines.append(
            f"verified <= PGD <= clean per example on the {pgd['n']} attacked: {verdict} "
            f"(violations per eps: {report['violations']})"
        )
    return "\n".join(lines)
