"""AutoAttack (Croce & Hein 2020): the standard parameter-free ensemble, resumable."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from advjax._checks import (
    as_int_labels,
    check_batch,
    check_classes,
    check_epsilon,
    check_positive_int,
)
from advjax._compile import hashable, per_model
from advjax.attacks import (
    REJECTION_REASONS,
    Constraints,
    apgd,
    apgd_t,
    eot,
    fab,
    get_threat_model,
    l1,
    predicted_class,
    square,
    verify,
)
from advjax.data import map_batches
from advjax.evaluation._diagnostics import gradient_masking_checks, input_validity_findings
from advjax.evaluation._robustness import predictor
from advjax.parallel import default_batch_sharding

STATE_JSON = "autoattack_state.json"
STATE_NPZ = "autoattack_state.npz"
_BLACK_BOX = ("square",)


def standard_attacks(
    eps,
    *,
    norm: str = "linf",
    steps: int = 100,
    targets: int = 9,
    queries: int = 5000,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> dict[str, Any]:
    """The standard AutoAttack ensemble, in its order: APGD-CE, APGD-T, FAB-T, Square.

    Paper settings: 100 iterations each, 1 restart, 9 target classes for APGD-T
    and FAB-T, 5,000 queries for Square (Linf ``p_init = 0.8``). For a model with
    ``K <= 9`` classes :func:`autoattack` passes ``targets = K - 1``, as the
    reference implementation does. L1 (Croce & Hein 2021, "Mind the box",
    arXiv:2103.01208): l1-APGD-CE with 5 restarts and l1-APGD-T with 5 targets,
    both with the ``3 eps, 2 eps, eps`` budget schedule, as the reference's L1
    settings; FAB-T and Square have no L1 update here, so the L1 ensemble is the
    two APGD attacks.

    Example:
      >>> from advjax.evaluation import standard_attacks
      >>> list(standard_attacks(0.3)), list(standard_attacks(10.0, norm="l1"))
      (['apgd-ce', 'apgd-t', 'fab-t', 'square'], ['apgd-ce', 'apgd-t'])
    """
    box = dict(clip_min=clip_min, clip_max=clip_max)
    if get_threat_model(norm) == l1:
        return {
            "apgd-ce": apgd(eps, norm=norm, loss="ce", steps=steps, restarts=5, **box),
            "apgd-t": apgd_t(eps, norm=norm, steps=steps, num_targets=min(targets, 5), **box),
        }
    return {
        "apgd-ce": apgd(eps, norm=norm, loss="ce", steps=steps, **box),
        "apgd-t": apgd_t(eps, norm=norm, steps=steps, num_targets=targets, **box),
        "fab-t": fab(eps, norm=norm, steps=steps, num_targets=targets, **box),
        "square": square(eps, norm=norm, queries=queries, **box),
    }


def rand_attacks(
    eps,
    *,
    norm: str = "linf",
    steps: int = 100,
    eot_samples: int = 20,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
):
    """AutoAttack's ``rand`` version: APGD-CE and APGD-DLR, each with EOT over 20 draws.

    Built on :func:`advjax.attacks.eot`; the attacks take a randomized
    ``logits_fn(x, key)``.

    Args:
      eps: the budget, in ``norm``, in input units.
      norm: ``"linf"`` or ``"l2"``.
      steps: APGD iterations per attack.
      eot_samples: random draws averaged per gradient (EOT).
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.

    Returns:
      ``{"apgd-ce": attack, "apgd-dlr": attack}``, each
      ``attack(logits_fn, x, y, *, key) -> x_adv`` with ``x_adv`` shaped like
      ``x``; APGD-DLR needs a model with at least 3 classes.

    Raises:
      ValueError: a bad budget, norm, step count or ``eot_samples`` (from
        :func:`advjax.apgd` and :func:`advjax.attacks.eot`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.evaluation import rand_attacks
      >>> attacks = rand_attacks(0.1, steps=2, eot_samples=2)
      >>> list(attacks)
      ['apgd-ce', 'apgd-dlr']
      >>> w = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
      >>> noisy = lambda x, key: (x + 0.01 * jax.random.normal(key, x.shape)) @ w
      >>> x, y = jnp.array([[0.6, 0.4], [0.9, 0.1]]), jnp.array([0, 0])
      >>> x_adv = attacks["apgd-ce"](noisy, x, y, key=jax.random.key(0))
      >>> x_adv.shape, bool(jnp.abs(x_adv - x).max() <= 0.1 + 1e-6)
      ((2, 2), True)
    """
    box = dict(clip_min=clip_min, clip_max=clip_max, early_stop=False)
    return {
        "apgd-ce": eot(apgd(eps, norm=norm, loss="ce", steps=steps, **box), eot_samples),
        "apgd-dlr": eot(apgd(eps, norm=norm, loss="dlr", steps=steps, **box), eot_samples),
    }


@dataclasses.dataclass
class AutoAttackResult:
    """The outcome of :func:`autoattack`.

    Attributes:
      clean_accuracy: share classified correctly without attack.
      robust_accuracy: share still correct after every attack (worst case per example).
      robust: per-example flags ``[N]`` (correct and unbroken).
      x_adv: the adversarial examples ``[N, ...]`` (the input where unbroken).
      attacks_run: names of the attacks completed, in order.
      per_attack: per attack: robust accuracy after it, points it broke, seconds,
        and ``rejected``: per reason (``non_finite``, ``outside_ball``,
        ``outside_box``) the returned points that failed the check and were not
        counted, however they were classified.
      warnings: gradient-masking warnings (see :func:`gradient_masking_checks`).
      diagnostics: the figures behind the warnings.
      correct: per-example flags ``[N]``, classified correctly without attack.
      escalated: :func:`fast_autoattack` only: why it escalated to the full
        standard ensemble, or ``None`` when it did not.

    Shares are fractions of all ``N`` examples, in ``[0, 1]``; seconds are wall
    time, compile included.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
      >>> x, y = jnp.array([[0.6, 0.4], [0.9, 0.1]]), jnp.array([0, 0])
      >>> result = advjax.evaluation.autoattack(lambda x: x @ w, x, y, eps=0.15,
      ...                                       key=jax.random.key(0), version="custom",
      ...                                       attacks={"fgsm": advjax.fgsm(0.15)},
      ...                                       diagnostics=False)
      >>> result.clean_accuracy, result.robust_accuracy, result.robust.tolist()
      (1.0, 0.5, [False, True])
      >>> result.attacks_run, result.per_attack["fgsm"]["broken"], result.x_adv.shape
      (['fgsm'], 1, (2, 2))
    """

    clean_accuracy: float
    robust_accuracy: float
    robust: np.ndarray
    x_adv: np.ndarray
    attacks_run: list[str]
    per_attack: dict[str, dict[str, float]]
    warnings: list[str]
    diagnostics: dict[str, Any]
    correct: np.ndarray | None = None
    """Per-example flags ``[N]``: classified correctly without attack."""
    escalated: str | None = None
    """:func:`fast_autoattack` only: why it ran the full ensemble (``None``: it did not)."""


def _config(eps, norm, version, n, names, key) -> dict[str, Any]:
    return {
        "eps": float(eps),
        "norm": norm,
        "version": version,
        "num_examples": int(n),
        "attacks": list(names),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
    }


def _save_state(directory: Path, config, robust, x_adv, attacks_run, per_attack, **arrays) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / STATE_NPZ, robust=robust, x_adv=x_adv, **arrays)
    state = dict(config=config, attacks_run=attacks_run, per_attack=per_attack)
    (directory / STATE_JSON).write_text(json.dumps(state, indent=2) + "\n")


def _load_state(directory: Path, config):
    json_path, npz_path = directory / STATE_JSON, directory / STATE_NPZ
    if not json_path.exists() or not npz_path.exists():
        return None
    state = json.loads(json_path.read_text())
    if state["config"] != config:
        raise ValueError(
            f"the saved AutoAttack state in {directory} was made with {state['config']}, "
            f"not {config}; use another state_dir or delete it."
        )
    with np.load(npz_path, allow_pickle=False) as arrays:
        extras = {k: arrays[k] for k in arrays.files if k not in ("robust", "x_adv")}
        return arrays["robust"], arrays["x_adv"], state["attacks_run"], state["per_attack"], extras


#: :func:`advjax.attacks.verify` as one compiled program per budget and shape (not one
#: small program per operation, as eagerly).
_compiled_verify = jax.jit(verify, static_argnums=2)


def judge_points(x, y, x_adv, constraints: Constraints, predictions: Callable):
    """Which attack outputs count as broken: valid (re-verified) and misclassified.

    Args:
      x: ``[M, ...]`` the clean inputs.
      y: ``[M]`` their labels.
      x_adv: ``[M, ...]`` an attack's outputs for them.
      constraints: the threat model, budget and box every output must keep.
      predictions: ``images -> [M]`` predicted classes.

    Returns:
      ``(fooled [M] bool, rejected {reason: count})``.

    Example:
      >>> import numpy as np
      >>> from advjax.attacks import Constraints, linf
      >>> from advjax.evaluation._autoattack import judge_points
      >>> x, y = np.zeros((2, 1), np.float32), np.array([0, 0])
      >>> x_adv = np.array([[0.1], [0.5]], np.float32)
      >>> fooled, rejected = judge_points(x, y, x_adv, Constraints(linf, 0.2, 0.0, 1.0),
      ...                                 lambda images: np.ones(len(images), int))
      >>> fooled.tolist(), rejected["outside_ball"]
      ([True, False], 1)
    """
    check = _compiled_verify if hashable(constraints) else verify
    checks = {k: np.asarray(v) for k, v in check(x, x_adv, constraints).items()}
    rejected = {reason: int(checks[reason].sum()) for reason in REJECTION_REASONS}
    return (np.asarray(predictions(x_adv)) != y) & checks["valid"], rejected


@per_model
def _runner(logits_fn, attack):
    """``attack`` jitted for ``logits_fn``, compiled once per model, attack and shape."""
    return jax.jit(lambda xb, yb, k: attack(logits_fn, xb, yb, key=k))


def _version_attacks(version, eps, norm, num_classes, clip_min, clip_max) -> dict[str, Any]:
    """The ensemble of ``version`` for a ``num_classes``-class model, on the declared box."""
    if version == "rand":
        return rand_attacks(eps, norm=norm, clip_min=clip_min, clip_max=clip_max)
    check_classes(
        num_classes,
        4,
        "AutoAttack's standard ensemble (APGD-T's targeted DLR loss; for fewer classes use "
        "version='custom', e.g. apgd-ce, fab(num_targets=None) and square)",
    )
    targets = min(9, num_classes - 1)
    return standard_attacks(eps, norm=norm, targets=targets, clip_min=clip_min, clip_max=clip_max)


def _check_ensemble(attacks, eps, threat, num_classes, clip_min, clip_max) -> None:
    """Refuses, before any attack runs, an ensemble that cannot run or cannot count.

    Every attack must be callable; one built by advjax must fit the model's class
    count, use AutoAttack's box and a budget no larger than ``eps`` in its threat model.
    """
    if not attacks:
        raise ValueError("attacks is empty: give at least one {name: attack}.")
    for name, attack in attacks.items():
        if not callable(attack):
            raise TypeError(f"attack {name!r} is not callable: got {type(attack).__name__}.")
        check_classes(num_classes, getattr(attack, "min_classes", 2), f"attack {name!r}")
        constraints = getattr(attack, "constraints", None)
        if constraints is None:
            continue
        if (constraints.clip_min, constraints.clip_max) != (float(clip_min), float(clip_max)):
            raise ValueError(
                f"attack {name!r} was built for the range [{constraints.clip_min}, "
                f"{constraints.clip_max}] but autoattack was given [{clip_min}, {clip_max}]; "
                "build it with the same clip_min/clip_max."
            )
        same_norm = constraints.threat is not None and constraints.threat == threat
        if constraints.eps is not None and same_norm:
            attack_eps = np.asarray(constraints.eps)
            if attack_eps.size == 1 and float(attack_eps) > float(eps) * (1 + 1e-6):
                raise ValueError(
                    f"attack {name!r} was built with eps={float(attack_eps)} > autoattack's "
                    f"eps={eps}: its points would be rejected; build it with eps <= {eps}."
                )


def autoattack(
    logits_fn: Callable,
    x,
    y,
    *,
    eps: float,
    key: jax.Array,
    norm: str = "linf",
    version: str = "standard",
    attacks: Mapping[str, Any] | None = None,
    batch_size: int = 500,
    state_dir: str | Path | None = None,
    diagnostics: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    progress: bool = False,
    sharding: jax.sharding.Sharding | None = None,
) -> AutoAttackResult:
    """Evaluates robust accuracy with AutoAttack (Croce & Hein 2020).

    "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks". Attacks run in order (standard: APGD-CE, APGD-T
    with 9 targets, FAB-T with 9 targets, Square with 5,000 queries, 100
    iterations each); each attack only sees the examples no earlier attack
    broke, so the result is the worst case per example. A point counts as
    broken if it is misclassified within the ``eps``-ball and the valid range.

    Reproducible from ``key``: attack ``i`` on batch ``b`` uses
    ``fold_in(fold_in(key, i), b)``. With ``state_dir`` the per-example robust
    flags and adversarial examples (``autoattack_state.npz``) and the attacks
    already run (``autoattack_state.json``) are saved after each attack, and a
    later call with the same arguments resumes after the last completed attack.
    No pickle is used.

    Args:
      logits_fn: the eval-mode model ``x -> logits``; for ``version="rand"`` a
        randomized ``(x, key) -> logits``.
      x: inputs ``[N, ...]`` in ``[clip_min, clip_max]``.
      y: integer labels ``[N]`` or one-hot/probability rows ``[N, K]``.
      eps: the budget.
      key: PRNG key.
      norm: ``"linf"`` or ``"l2"``.
      version: ``"standard"``, ``"rand"`` (APGD-CE/DLR with EOT over 20 draws) or
        ``"custom"`` (give ``attacks``).
      attacks: ``{name: attack}`` replacing the version's ensemble.
      batch_size: examples per compiled batch.
      state_dir: where to save and resume the state (``None``: no saving).
      diagnostics: run the gradient-masking checks and report warnings.
      clip_min: lower end of the valid input range.
      clip_max: upper end of the valid input range.
      progress: show a progress bar over the batches of each attack.
      sharding: where each batch goes, as in :func:`advjax.evaluate`; ``None``
        splits it over every local device when there are several
        (:func:`advjax.parallel.default_batch_sharding`). The result does not
        depend on the device count.

    Returns:
      An :class:`AutoAttackResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (16, 4))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1))
      >>> y = jnp.argmax(logits_fn(x), -1)
      >>> attacks = advjax.evaluation.standard_attacks(0.05, steps=5, targets=2, queries=10)
      >>> result = advjax.evaluation.autoattack(logits_fn, x, y, eps=0.05, key=jax.random.key(2),
      ...                                 attacks=attacks, version="custom")
      >>> result.robust_accuracy <= result.clean_accuracy
      True
    """
    x, y = np.asarray(x), np.asarray(y)
    if version not in ("standard", "rand", "custom"):
        raise ValueError(f"unknown version {version!r}; choose 'standard', 'rand' or 'custom'.")
    if np.ndim(eps) != 0:
        raise ValueError(f"eps must be a scalar budget, got shape {np.shape(eps)}.")
    check_epsilon(eps)
    batch_size = check_positive_int(batch_size, "batch_size")
    threat = get_threat_model(norm)
    randomized = version == "rand"
    eval_key = jax.random.fold_in(key, 10_000)
    if randomized:
        model = lambda xb: logits_fn(xb, eval_key)  # noqa: E731
    else:
        model = logits_fn
    num_classes = check_batch(model, x, y, clip_min, clip_max)
    y = np.asarray(as_int_labels(y))
    if attacks is None:
        if version == "custom":
            raise ValueError("version='custom' needs attacks={name: attack}.")
        attacks = _version_attacks(version, eps, norm, num_classes, clip_min, clip_max)
    attacks = dict(attacks)
    _check_ensemble(attacks, eps, threat, num_classes, clip_min, clip_max)
    constraints = Constraints(threat, float(eps), float(clip_min), float(clip_max))
    sharding = default_batch_sharding() if sharding is None else sharding
    predict = jax.jit(lambda xb: predicted_class(model(xb))) if randomized else predictor(model)

    def predictions(images):
        return map_batches(predict, [images], batch_size=batch_size, bucket=True, sharding=sharding)

    correct = predictions(x) == y
    config = _config(eps, norm, version, len(x), attacks, key)
    state_path = Path(state_dir) if state_dir is not None else None
    loaded = _load_state(state_path, config) if state_path is not None else None
    if loaded is not None:
        robust, x_adv, attacks_run, per_attack, _ = loaded
        robust, x_adv = robust.copy(), x_adv.copy()
    else:
        robust, x_adv, attacks_run, per_attack = correct.copy(), x.copy(), [], {}

    for index, (name, attack) in enumerate(attacks.items()):
        if name in attacks_run:
            continue
        started = time.perf_counter()
        run = _runner(logits_fn, attack)
        attack_key = jax.random.fold_in(key, index)
        todo = np.flatnonzero(robust)
        broken_here, rejected = 0, dict.fromkeys(REJECTION_REASONS, 0)
        if todo.size:  # no work is spent once every point is broken
            found = map_batches(
                run,
                [x, y],
                batch_size=batch_size,
                key=attack_key,
                rows=todo,
                bucket=True,
                sharding=sharding,
                progress=name if progress else False,
            )
            fooled, rejected = judge_points(x[todo], y[todo], found, constraints, predictions)
            robust[todo[fooled]] = False
            x_adv[todo[fooled]] = found[fooled]
            broken_here = int(fooled.sum())
        attacks_run.append(name)
        per_attack[name] = {
            "robust_accuracy_after": float(robust.mean()),
            "broken": broken_here,
            "seconds": time.perf_counter() - started,
            "rejected": rejected,
        }
        if state_path is not None:
            _save_state(state_path, config, robust, x_adv, attacks_run, per_attack)

    rejected_total = sum(sum(r.get("rejected", {}).values()) for r in per_attack.values())
    figures, warnings = input_validity_findings(model, x, y, batch_size, rejected_total)
    if diagnostics and not randomized:
        black = {n: r["broken"] for n, r in per_attack.items() if n in _BLACK_BOX}
        white_robust = None
        if black:
            # Square runs after the white-box attacks: anything it breaks, they missed.
            white_robust = float(robust.mean() + sum(black.values()) / max(len(x), 1))
        more_figures, more_warnings = gradient_masking_checks(
            logits_fn,
            x[:batch_size],
            y[:batch_size],
            black_box_accuracy=float(robust.mean()) if black else None,
            white_box_accuracy=white_robust,
            warn_non_finite=False,
        )
        figures.update(more_figures)
        warnings.extend(more_warnings)
    return AutoAttackResult(
        clean_accuracy=float(correct.mean()),
        robust_accuracy=float(robust.mean()),
        robust=robust,
        x_adv=x_adv,
        attacks_run=list(attacks_run),
        per_attack=per_attack,
        warnings=warnings,
        diagnostics=figures,
        correct=correct,
    )
