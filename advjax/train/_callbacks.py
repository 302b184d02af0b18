"""Per-epoch evaluation and early stopping for :func:`fit`."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from advjax.attacks import Attack
from advjax.train._objectives import accuracy
from advjax.train._state import TrainState, eval_logits


def robust_eval_fn(x, y, attack: Attack, *, key: jax.Array | None = None, batch_size: int = 500):
    """An ``eval_fn`` for :func:`fit`: clean and attacked accuracy on a held-out batch.

    The attack sees the eval-mode model; the key is fixed, so epochs are
    compared on the same random starts. Wong et al. (2020) detect catastrophic
    overfitting this way (PGD on one batch after every epoch).

    Args:
      x: held-out inputs in ``[0, 1]``.
      y: their integer labels.
      attack: e.g. ``advjax.pgd(0.3, steps=10, step_size=0.075)``.
      key: the attack's key (default ``key(0)``).
      batch_size: examples per compiled call.

    Returns:
      ``state -> {"clean_acc": float, "adv_acc": float}``.

    Example:
      >>> import advjax, jax.numpy as jnp
      >>> from advjax import train
      >>> eval_fn = train.robust_eval_fn(jnp.zeros((8, 28, 28, 1)), jnp.zeros(8, jnp.int32),
      ...                                advjax.pgd(0.3, steps=10))
    """
    key = jax.random.key(0) if key is None else key
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if n == 0 or y.shape[0] != n:
        raise ValueError(f"need matching non-empty x and y, got {x.shape} and {y.shape}.")
    starts = list(range(0, n, batch_size))

    @jax.jit
    def counts(state: TrainState, xb, yb, batch_key):
        logits_fn = eval_logits(state)
        x_adv = attack(logits_fn, xb, yb, key=batch_key)
        size = xb.shape[0]
        return accuracy(logits_fn(xb), yb) * size, accuracy(logits_fn(x_adv), yb) * size

    def eval_fn(state: TrainState) -> dict[str, float]:
        clean = adv = 0.0
        for i, start in enumerate(starts):
            c, a = counts(
                state,
                x[start : start + batch_size],
                y[start : start + batch_size],
                jax.random.fold_in(key, i),
            )
            clean, adv = clean + float(c), adv + float(a)
        return {"clean_acc": clean / n, "adv_acc": adv / n}

    return eval_fn


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stops :func:`fit` when a logged metric stops improving or collapses.

    * ``patience``: stop after this many evaluated epochs without an
      improvement of more than ``min_delta`` over the best value (Rice, Wong &
      Kolter 2020, "Overfitting in adversarially robust deep learning": robust
      test accuracy peaks soon after the first learning-rate decay; stop there).
    * ``max_drop``: stop as soon as the metric falls more than ``max_drop``
      below its best (catastrophic overfitting of FGSM training, Wong et al.
      2020: PGD accuracy drops to ~0 within an epoch).

    The decision is a pure function of the history, so a resumed run stops at
    the same epoch. Pair it with ``fit``'s ``best`` checkpoint (same metric)
    to keep the best model.

    Attributes:
      metric: a key of the per-epoch record, e.g. ``"eval/adv_acc"``.
      patience: epochs without improvement before stopping, or ``None``.
      min_delta: the smallest change that counts as an improvement.
      max_drop: the fall below the best that stops at once, or ``None``.

    Example:
      >>> from advjax import train
      >>> stop = train.EarlyStopping(patience=2)
      >>> history = [{"eval/adv_acc": a} for a in (0.5, 0.6, 0.55, 0.58)]
      >>> stop.check(history)
      'eval/adv_acc did not improve on 0.6 for 2 epochs'
    """

    metric: str = "eval/adv_acc"
    patience: int | None = None
    min_delta: float = 0.0
    max_drop: float | None = None

    def __post_init__(self):
        if self.patience is None and self.max_drop is None:
            raise ValueError("EarlyStopping needs patience, max_drop, or both.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"patience must be a positive int, got {self.patience!r}.")
        if self.max_drop is not None and not self.max_drop > 0:
            raise ValueError(f"max_drop must be > 0, got {self.max_drop}.")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}.")

    def check(self, history: list[dict]) -> str | None:
        """The reason to stop after the last epoch of ``history``, or ``None``."""
        values = []
        for record in history:
            if self.metric not in record:
                raise KeyError(
                    f"EarlyStopping watches {self.metric!r}, which the epoch record lacks "
                    f"(it has {sorted(record)}); pass an eval_fn that returns it."
                )
            values.append(float(record[self.metric]))
        if not values:
            return None
        best, best_index, since = -math.inf, -1, 0
        for i, value in enumerate(values):
            if value > best + self.min_delta or best_index < 0:
                best, best_index = value, i
        since = len(values) - 1 - best_index
        last = values[-1]
        peak = max(values)
        if self.max_drop is not None and last < peak - self.max_drop:
            return f"{self.metric} fell from {peak:.4g} to {last:.4g} (more than {self.max_drop})"
        if self.patience is not None and since >= self.patience:
            return f"{self.metric} did not improve on {best:.4g} for {since} epochs"
        return None
