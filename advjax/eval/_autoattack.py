"""AutoAttack (Croce & Hein 2020): the standard parameter-free ensemble, resumable."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import check_epsilon, check_inputs, check_positive_int
from advjax.attacks import apgd, apgd_t, fab, get_threat_model, square
from advjax.eval._diagnostics import gradient_masking_checks

STATE_JSON = "autoattack_state.json"
STATE_NPZ = "autoattack_state.npz"
_BLACK_BOX = ("square",)


def standard_attacks(
    eps, *, norm: str = "linf", steps: int = 100, targets: int = 9, queries: int = 5000
) -> dict[str, Any]:
    """The standard AutoAttack ensemble, in its order: APGD-CE, APGD-T, FAB-T, Square.

    Paper settings: 100 iterations each, 1 restart, 9 target classes for APGD-T
    and FAB-T, 5,000 queries for Square (Linf ``p_init = 0.8``).

    Example:
      >>> from advjax.eval import standard_attacks
      >>> list(standard_attacks(0.3))
      ['apgd-ce', 'apgd-t', 'fab-t', 'square']
    """
    return {
        "apgd-ce": apgd(eps, norm=norm, loss="ce", steps=steps),
        "apgd-t": apgd_t(eps, norm=norm, steps=steps, num_targets=targets),
        "fab-t": fab(eps, norm=norm, steps=steps, num_targets=targets),
        "square": square(eps, norm=norm, queries=queries),
    }


def rand_attacks(eps, *, norm: str = "linf", steps: int = 100, eot_samples: int = 20):
    """AutoAttack's ``rand`` version: APGD-CE and APGD-DLR, each with EOT over 20 draws.

    Needs :func:`advjax.attacks.eot`; the attacks take a randomized
    ``logits_fn(x, key)``.
    """
    try:
        from advjax.attacks._adaptive import eot
    except ImportError as error:  # pragma: no cover - depends on the other module
        raise NotImplementedError("autoattack version='rand' needs advjax.attacks.eot") from error
    return {
        "apgd-ce": eot(apgd(eps, norm=norm, loss="ce", steps=steps, early_stop=False), eot_samples),
        "apgd-dlr": eot(
            apgd(eps, norm=norm, loss="dlr", steps=steps, early_stop=False), eot_samples
        ),
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
      per_attack: per attack: robust accuracy after it, points it broke, seconds.
      warnings: gradient-masking warnings (see :func:`gradient_masking_checks`).
      diagnostics: the figures behind the warnings.
    """

    clean_accuracy: float
    robust_accuracy: float
    robust: np.ndarray
    x_adv: np.ndarray
    attacks_run: list[str]
    per_attack: dict[str, dict[str, float]]
    warnings: list[str]
    diagnostics: dict[str, Any]


def _config(eps, norm, version, n, names, key) -> dict[str, Any]:
    return {
        "eps": float(eps),
        "norm": norm,
        "version": version,
        "num_examples": int(n),
        "attacks": list(names),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
    }


def _save_state(directory: Path, config, robust, x_adv, attacks_run, per_attack) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / STATE_NPZ, robust=robust, x_adv=x_adv)
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
        return arrays["robust"], arrays["x_adv"], state["attacks_run"], state["per_attack"]


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
      y: integer labels ``[N]``.
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

    Returns:
      An :class:`AutoAttackResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> w = jax.random.normal(jax.random.key(0), (16, 4))
      >>> logits_fn = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1))
      >>> y = jnp.argmax(logits_fn(x), -1)
      >>> attacks = advjax.eval.standard_attacks(0.05, steps=5, targets=2, queries=10)
      >>> result = advjax.eval.autoattack(logits_fn, x, y, eps=0.05, key=jax.random.key(2),
      ...                                 attacks=attacks, version="custom")
      >>> result.robust_accuracy <= result.clean_accuracy
      True
    """
    x, y = np.asarray(x), np.asarray(y)
    check_inputs(x, y, clip_min, clip_max)
    check_epsilon(eps)
    batch_size = check_positive_int(batch_size, "batch_size")
    threat = get_threat_model(norm)
    if version not in ("standard", "rand", "custom"):
        raise ValueError(f"unknown version {version!r}; choose 'standard', 'rand' or 'custom'.")
    if attacks is None:
        if version == "custom":
            raise ValueError("version='custom' needs attacks={name: attack}.")
        attacks = (
            standard_attacks(eps, norm=norm)
            if version == "standard"
            else rand_attacks(eps, norm=norm)
        )
    attacks = dict(attacks)
    randomized = version == "rand"
    eval_key = jax.random.fold_in(key, 10_000)

    if randomized:
        predict = jax.jit(lambda xb: jnp.argmax(logits_fn(xb, eval_key), -1))
    else:
        predict = jax.jit(lambda xb: jnp.argmax(logits_fn(xb), -1))

    def predictions(images):
        out = [
            np.asarray(predict(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    correct = predictions(x) == y
    config = _config(eps, norm, version, len(x), attacks, key)
    state_path = Path(state_dir) if state_dir is not None else None
    loaded = _load_state(state_path, config) if state_path is not None else None
    if loaded is not None:
        robust, x_adv, attacks_run, per_attack = loaded
        robust, x_adv = robust.copy(), x_adv.copy()
    else:
        robust, x_adv, attacks_run, per_attack = correct.copy(), x.copy(), [], {}

    for index, (name, attack) in enumerate(attacks.items()):
        if name in attacks_run:
            continue
        started = time.perf_counter()
        run = jax.jit(lambda xb, yb, k, attack=attack: attack(logits_fn, xb, yb, key=k))
        attack_key = jax.random.fold_in(key, index)
        todo = np.flatnonzero(robust)
        broken_here = 0
        for batch_index, start in enumerate(range(0, len(todo), batch_size)):
            idx = todo[start : start + batch_size]
            pad = batch_size - len(idx) if len(todo) > batch_size else 0
            padded = np.concatenate([idx, np.repeat(idx[:1], pad)]) if pad else idx
            xb = run(x[padded], y[padded], jax.random.fold_in(attack_key, batch_index))
            xb = np.asarray(xb)[: len(idx)]
            norms = np.asarray(threat.norm(jnp.asarray(xb - x[idx])))
            valid = (norms <= eps * (1 + 1e-5) + 1e-6) & (
                xb.min(axis=tuple(range(1, xb.ndim))) >= clip_min
            )
            fooled = (predictions(xb) != y[idx]) & valid
            robust[idx[fooled]] = False
            x_adv[idx[fooled]] = xb[fooled]
            broken_here += int(fooled.sum())
        attacks_run.append(name)
        per_attack[name] = {
            "robust_accuracy_after": float(robust.mean()),
            "broken": broken_here,
            "seconds": time.perf_counter() - started,
        }
        if state_path is not None:
            _save_state(state_path, config, robust, x_adv, attacks_run, per_attack)

    warnings, figures = [], {}
    if diagnostics and not randomized:
        black = {n: r["broken"] for n, r in per_attack.items() if n in _BLACK_BOX}
        white_robust = None
        if black:
            # Square runs after the white-box attacks: anything it breaks, they missed.
            white_robust = float(robust.mean() + sum(black.values()) / max(len(x), 1))
        figures, warnings = gradient_masking_checks(
            logits_fn,
            x[:batch_size],
            y[:batch_size],
            black_box_accuracy=float(robust.mean()) if black else None,
            white_box_accuracy=white_robust,
        )
    return AutoAttackResult(
        clean_accuracy=float(correct.mean()),
        robust_accuracy=float(robust.mean()),
        robust=robust,
        x_adv=x_adv,
        attacks_run=list(attacks_run),
        per_attack=per_attack,
        warnings=warnings,
        diagnostics=figures,
    )
