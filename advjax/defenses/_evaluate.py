"""Honest evaluation of a defense: naive transfer attack versus adaptive attack.

For every defense, :func:`evaluate_defense` reports clean accuracy, the rate
at which clean inputs are rejected (false positives), robust accuracy under a
*naive* attack (PGD computed on the undefended model and transferred, the
evaluation many defense papers stopped at) and under an *adaptive* attack
(Tramer et al. 2020): BPDA through non-differentiable preprocessing, EOT over
randomness, detectors and classifier attacked jointly through
:meth:`Guarded.attack_logits`, ensembles attacked as one function. An input
counts as robust if the defense classifies it correctly or rejects it.

The gradient attack is backed by a gradient-free one: for a deterministic
defense, the examples that survive it are attacked again with the Square
attack (Andriushchenko et al. 2020) on the exact forward pass of the same
target, which needs no gradient and so is not fooled by a poor BPDA
approximation or other gradient masking. How many examples only the Square
attack broke is reported (``gradient_free_breaks``): a large figure means the
gradient attack was misled, and the defense's gradients deserve a closer look.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from advjax._checks import as_int_labels, check_batch
from advjax.attacks import Constraints, eot, linf, pgd, square, verify
from advjax.data import map_batches
from advjax.defenses._guard import ABSTAIN, Guarded
from advjax.defenses._preprocess import DefendedLogits


class RandomizedWithoutEOTWarning(UserWarning):
    """A randomized defense was attacked without Expectation over Transformation.

    :func:`evaluate_defense` warns with it when ``eot_samples=1`` for a
    randomized defense: each attack step then sees one random draw, so the
    adaptive robust accuracy it reports is likely an over-estimate (the result
    also has ``randomized_without_eot=True``). A ``UserWarning``: filter it, or
    turn it into an error, with :mod:`warnings`.

    Example:
      >>> import warnings
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax.defenses import (RandomizedWithoutEOTWarning, evaluate_defense,
      ...                              gaussian_noise, preprocess)
      >>> f = lambda x: jnp.stack([x.mean((1, 2, 3)), 0.5 - x.mean((1, 2, 3))], -1)
      >>> x, y = jnp.full((2, 2, 2, 1), 0.6), jnp.array([0, 0])
      >>> attack = advjax.pgd(0.1, steps=2)
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     result = evaluate_defense(preprocess(f, gaussian_noise(0.05)), x, y, eps=0.1,
      ...                               key=jax.random.key(0), base_logits_fn=f, eot_samples=1,
      ...                               naive_attack=attack, adaptive_attack=attack)
      >>> [w.category is RandomizedWithoutEOTWarning for w in caught], result.randomized_without_eot
      ([True], True)
    """


@dataclasses.dataclass
class DefenseResult:
    """One row of the defense table. Accuracies are fractions in ``[0, 1]``.

    Attributes:
      name: the defense.
      model: the protected model.
      eps: the Linf budget.
      examples: number of test examples.
      clean_accuracy: correct answers on clean inputs (abstentions count as wrong).
      false_positive_rate: fraction of clean inputs rejected.
      naive_robust_accuracy: correct-or-rejected under the transferred attack.
      adaptive_robust_accuracy: correct-or-rejected under the adaptive attack.
      robust_accuracy: per example, robust to both attacks.
      overhead: inference time of the defense divided by the undefended model's.
      randomized: whether the defense draws randomness.
      eot_samples: EOT draws per query in the adaptive attack (1: no EOT).
      randomized_without_eot: flag: a randomized defense attacked without EOT
        (its adaptive figure is then an over-estimate).
      attack_seconds: wall time of all attacks.
      gradient_free_queries: Square-attack queries per surviving example (0: not run;
        always 0 for randomized defenses).
      gradient_free_breaks: fraction of all examples that survived the gradient
        attack but not the Square attack (already counted in the adaptive figure).
      rejected_points: attack outputs (naive and adaptive) that were not finite, or
        outside the eps-ball or ``[0, 1]``, and so were not counted as attacks.

    ``markdown_header()`` and ``markdown_row()`` give the table lines that
    :func:`to_markdown` joins (accuracies as percentages, overhead as ``1.2x``).

    Example:
      >>> from advjax.defenses import DefenseResult
      >>> r = DefenseResult("bit_depth(1)", "mlp", eps=0.3, examples=100, clean_accuracy=0.98,
      ...                   false_positive_rate=0.0, naive_robust_accuracy=0.4,
      ...                   adaptive_robust_accuracy=0.05, robust_accuracy=0.05, overhead=1.2,
      ...                   randomized=False, eot_samples=1, randomized_without_eot=False,
      ...                   attack_seconds=12.5)
      >>> r.markdown_row()
      '| mlp | bit_depth(1) | 98.0% | 0.0% | 40.0% | 5.0% | 5.0% | - | 1.2x | - |'
    """

    name: str
    model: str
    eps: float
    examples: int
    clean_accuracy: float
    false_positive_rate: float
    naive_robust_accuracy: float
    adaptive_robust_accuracy: float
    robust_accuracy: float
    overhead: float
    randomized: bool
    eot_samples: int
    randomized_without_eot: bool
    attack_seconds: float
    gradient_free_queries: int = 0
    gradient_free_breaks: float = 0.0
    rejected_points: int = 0

    @staticmethod
    def markdown_header() -> str:
        return (
            "| model | defense | clean acc | FPR | naive robust acc | adaptive robust acc "
            "| robust acc (both) | broken only by Square | time overhead | EOT |\n"
            "|---|---|---|---|---|---|---|---|---|---|"
        )

    def markdown_row(self) -> str:
        eot_text = f"{self.eot_samples}" if self.randomized else "-"
        if self.randomized_without_eot:
            eot_text = "**none (warning)**"
        square_text = (
            f"{100 * self.gradient_free_breaks:.1f}%" if self.gradient_free_queries else "-"
        )
        return (
            f"| {self.model} | {self.name} | {100 * self.clean_accuracy:.1f}% "
            f"| {100 * self.false_positive_rate:.1f}% | {100 * self.naive_robust_accuracy:.1f}% "
            f"| {100 * self.adaptive_robust_accuracy:.1f}% "
            f"| {100 * self.robust_accuracy:.1f}% | {square_text} "
            f"| {self.overhead:.1f}x | {eot_text} |"
        )


def to_markdown(results: Sequence[DefenseResult]) -> str:
    """A markdown table of results.

    Args:
      results: rows of the table, e.g. one :func:`evaluate_defense` result per
        defense.

    Returns:
      The header, the separator line and one line per result (accuracies as
      percentages), joined by newlines, without a trailing newline.

    Example:
      >>> from advjax.defenses import DefenseResult, to_markdown
      >>> r = DefenseResult("bit_depth(1)", "mlp", 0.3, 100, 0.98, 0.0, 0.4, 0.05, 0.05, 1.2,
      ...                   False, 1, False, 12.5)
      >>> table = to_markdown([r])
      >>> len(table.splitlines()), table.startswith("| model | defense | clean acc |")
      (3, True)
      >>> table.splitlines()[-1]
      '| mlp | bit_depth(1) | 98.0% | 0.0% | 40.0% | 5.0% | 5.0% | - | 1.2x | - |'
    """
    return "\n".join([DefenseResult.markdown_header(), *(r.markdown_row() for r in results)])


def _predictor(defense) -> tuple[Callable, Callable, bool]:
    """Returns ``(predict(x, key), target(y), randomized)`` for the supported defense kinds."""
    if isinstance(defense, Guarded):
        return defense.predict, defense.attack_logits, defense.randomized
    if isinstance(defense, DefendedLogits):
        adaptive = defense.adaptive()
        randomized = defense.randomized

        def predict(x, key):
            return jnp.argmax(defense(x, key), axis=-1)

        return predict, (lambda y: adaptive), randomized
    if callable(defense):
        if getattr(defense, "randomized", False):
            raise TypeError(
                "evaluate_defense: randomized callables must be DefendedLogits or Guarded"
            )
        return (lambda x, key: jnp.argmax(defense(x), axis=-1)), (lambda y: defense), False
    raise TypeError(f"evaluate_defense: unsupported defense {type(defense).__name__}")


def _best_time(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def evaluate_defense(
    defense,
    x,
    y,
    *,
    eps: float,
    key: jax.Array,
    base_logits_fn: Callable,
    name: str | None = None,
    model: str = "",
    naive_attack=None,
    adaptive_attack=None,
    eot_samples: int = 10,
    gradient_free_queries: int = 1000,
    batch_size: int = 250,
) -> DefenseResult:
    """Evaluates a defense against a naive and an adaptive Linf attack.

    Args:
      defense: a :class:`DefendedLogits` (preprocessing), a :class:`Guarded`
        model (detectors, confidence, agreement) or a deterministic logits
        function (an ensemble, or the undefended model as a baseline).
      x: clean test inputs.
      y: their integer labels (or one-hot rows).
      eps: the Linf budget.
      key: PRNG key (attacks and randomized defenses).
      base_logits_fn: the undefended model: the naive attack's surrogate and
        the reference for the time overhead.
      name: the defense's label (default: its ``name`` attribute).
      model: the protected model's label.
      naive_attack: attack run on ``base_logits_fn`` and transferred; default
        PGD-40.
      adaptive_attack: attack run on the adaptive target (BPDA / joint
        logits); default PGD-100 with step ``eps / 20``.
      eot_samples: EOT draws per query for randomized defenses; ``1`` disables
        EOT, which raises :class:`RandomizedWithoutEOTWarning` and sets
        ``randomized_without_eot``.
      gradient_free_queries: for a deterministic defense, the examples that
        survive ``adaptive_attack`` are attacked again by a Linf Square attack
        (margin loss, this many queries) on the exact forward pass of the
        adaptive target; ``0`` skips it. Randomized defenses skip it.
      batch_size: evaluation batch size.

    Returns:
      a :class:`DefenseResult` (``.markdown_row()`` for the table).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import bit_depth, evaluate_defense, preprocess
      >>> w = jax.random.normal(jax.random.key(0), (16, 3))
      >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
      >>> x = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1))
      >>> y = jnp.argmax(f(x), axis=-1)
      >>> r = evaluate_defense(preprocess(f, bit_depth(2)), x, y, eps=0.3,
      ...                      key=jax.random.key(2), base_logits_fn=f)
      >>> r.adaptive_robust_accuracy <= r.clean_accuracy
      True
    """
    if not 0 < float(eps) <= 1:
        raise ValueError(f"evaluate_defense: eps must be in (0, 1], got {eps!r}")
    if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
        raise ValueError(
            f"evaluate_defense: eot_samples must be an integer >= 1, got {eot_samples!r}"
        )
    if (
        isinstance(gradient_free_queries, bool)
        or not isinstance(gradient_free_queries, int)
        or gradient_free_queries < 0
    ):
        raise ValueError(
            "evaluate_defense: gradient_free_queries must be an integer >= 0, "
            f"got {gradient_free_queries!r}"
        )
    check_batch(base_logits_fn, np.asarray(x), np.asarray(y), 0.0, 1.0)
    x = np.asarray(x, np.float32)
    y = np.asarray(as_int_labels(np.asarray(y)))
    predict, target, randomized = _predictor(defense)
    name = name or getattr(defense, "name", None) or "undefended"
    naive_attack = naive_attack or pgd(eps, steps=40)
    adaptive_attack = adaptive_attack or pgd(eps, steps=100, step_size=eps / 20)
    without_eot = randomized and eot_samples < 2
    if without_eot:
        warnings.warn(
            f"defense {name!r} is randomized but is evaluated without EOT (eot_samples=1): "
            "its adaptive robust accuracy is likely an over-estimate",
            RandomizedWithoutEOTWarning,
            stacklevel=2,
        )
    if randomized:
        attack = (
            eot(adaptive_attack, eot_samples)
            if not without_eot
            else eot(adaptive_attack, 1, resample=False)
        )
    else:
        attack = adaptive_attack

    constraints = Constraints(linf, float(eps), 0.0, 1.0)

    @jax.jit
    def run(xb, yb, key):
        keys = jax.random.split(key, 5)
        x_naive = naive_attack(base_logits_fn, xb, yb, key=keys[0])
        x_adaptive = attack(target(yb), xb, yb, key=keys[1])
        clean = predict(xb, keys[2])
        # A point outside the ball or the box, or not finite, is not an attack's result:
        # the example keeps its clean answer for that attack.
        naive_ok = verify(xb, x_naive, constraints)["valid"]
        adaptive_ok = verify(xb, x_adaptive, constraints)["valid"]
        naive = jnp.where(naive_ok, predict(x_naive, keys[3]), clean)
        adaptive = jnp.where(adaptive_ok, predict(x_adaptive, keys[4]), clean)
        return clean, naive, adaptive, (~naive_ok).astype(jnp.int32) + (~adaptive_ok)

    started = time.perf_counter()
    clean, naive, adaptive, rejected_mask = map_batches(
        run, [x, y], batch_size=min(batch_size, len(x)), key=key
    )
    rejected = int(rejected_mask.sum())

    def robust(pred):
        return (pred == y) | (pred == ABSTAIN)

    square_queries = 0 if randomized else gradient_free_queries
    gradient_free_breaks = 0.0
    survivors = np.flatnonzero(robust(adaptive))
    if square_queries and len(survivors):
        broken = _gradient_free(
            square(eps, queries=square_queries),
            target,
            predict,
            x[survivors],
            y[survivors],
            jax.random.split(key)[1],
            batch_size,
        )
        adaptive[survivors[broken.nonzero()[0]]] = -2  # neither y nor ABSTAIN: a wrong answer
        gradient_free_breaks = float(broken.sum()) / len(x)
    seconds = time.perf_counter() - started

    xb = jnp.asarray(x[:batch_size])
    defended_time = _best_time(jax.jit(predict), xb, key)
    base_time = _best_time(jax.jit(base_logits_fn), xb)
    return DefenseResult(
        name=name,
        model=model,
        eps=float(eps),
        examples=len(x),
        clean_accuracy=float(np.mean(clean == y)),
        false_positive_rate=float(np.mean(clean == ABSTAIN)),
        naive_robust_accuracy=float(np.mean(robust(naive))),
        adaptive_robust_accuracy=float(np.mean(robust(adaptive))),
        robust_accuracy=float(np.mean(robust(naive) & robust(adaptive))),
        overhead=defended_time / max(base_time, 1e-9),
        randomized=randomized,
        eot_samples=1 if without_eot or not randomized else eot_samples,
        randomized_without_eot=without_eot,
        attack_seconds=seconds,
        gradient_free_queries=square_queries,
        gradient_free_breaks=gradient_free_breaks,
        rejected_points=rejected,
    )


def _gradient_free(attack, target, predict, x, y, key, batch_size) -> np.ndarray:
    """``bool[N]``: which of ``(x, y)`` the gradient-free ``attack`` breaks on the exact defense.

    Survivors are few when the defense is broken, so chunks are padded to a power of
    two (at most ``batch_size``) rather than to ``batch_size``.
    """

    @jax.jit
    def run(xb, yb, key):
        x_adv = attack(target(yb), xb, yb, key=key)
        pred = predict(x_adv, key)
        return (pred != yb) & (pred != ABSTAIN)

    return map_batches(run, [x, y], batch_size=batch_size, key=key, bucket=True)
