"""The training loop: epochs over a data set, evaluation, logs and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from advjax._checks import check_positive_int
from advjax.data import batches, num_batches
from advjax.train._callbacks import EarlyStopping
from advjax.train._checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from advjax.train._state import TrainState

EvalFn = Callable[[TrainState], dict[str, float]]
STEPS = "steps"
"""``checkpoint_dir/steps``: the ``keep`` newest step checkpoints (resume from the newest)."""
BEST = "best"
"""``checkpoint_dir/best``: the checkpoint with the highest ``best_metric``."""


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the final state and the per-epoch history."""

    state: TrainState
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    train_seconds: float
    stopped: str | None = None
    """Why training stopped early (:class:`EarlyStopping`), or ``None``."""
    best_state: TrainState | None = None
    """A host copy of the state at the best epoch when ``keep_best_state=True``."""


def _host_metrics(collected: list[dict]) -> dict[str, list[float]]:
    """Per-step metrics of the epoch so far as lists of floats (one host transfer)."""
    if not collected:
        return {}
    stacked = jax.device_get(jax.tree.map(lambda *xs: np.stack(xs), *collected))
    return {name: [float(v) for v in values] for name, values in stacked.items()}


def _join(carried: dict[str, list[float]], collected: list[dict]) -> dict[str, list[float]]:
    """This epoch's per-step metrics: those carried over a resume, then those run since."""
    steps = _host_metrics(collected)
    return {k: carried.get(k, []) + steps.get(k, []) for k in sorted(set(carried) | set(steps))}


def _epoch_means(per_step: dict[str, list[float]]) -> dict[str, float]:
    """Means over the epoch's steps; NaN entries (metrics a step does not define) are skipped."""
    means = {}
    for k, v in per_step.items():
        values = np.asarray(v, np.float32)
        finite = values[~np.isnan(values)]
        means[f"train/{k}"] = float(np.mean(finite)) if finite.size else float("nan")
    return means


class _TensorBoard:
    """Scalars of each epoch record to TensorBoard, if ``tensorboardX`` is installed."""

    def __init__(self, log_dir: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            warnings.warn(
                f"fit(tensorboard_dir={str(log_dir)!r}) needs the optional dependency "
                "tensorboardX, which is not installed: no TensorBoard logs will be written "
                "(the JSONL metrics are unaffected). Install it with "
                "`pip install 'advjax[tensorboard]'` or `pip install tensorboardX`.",
                stacklevel=3,
            )
            self.writer = None
            return
        self.writer = SummaryWriter(logdir=str(log_dir))

    def write(self, record: dict) -> None:
        if self.writer is None:
            return
        step = int(record["step"])
        for name, value in record.items():
            if name not in ("epoch", "step") and isinstance(value, int | float):
                self.writer.add_scalar(name, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def fit(
    state: TrainState,
    train_data,
    step: Callable,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    eval_fn: EvalFn | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep: int = 2,
    best_metric: str = "eval/adv_acc",
    metrics_path: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    max_steps: int | None = None,
    early_stopping: EarlyStopping | None = None,
    tensorboard_dir: str | Path | None = None,
    keep_best_state: bool = False,
) -> FitResult:
    """Trains ``state`` for ``epochs`` epochs of ``train_data``.

    Each epoch's order is ``permutation(fold_in(data_key, epoch))`` and each
    step's key is ``fold_in(step_key, state.step)``, so a run interrupted and
    resumed from its latest checkpoint replays exactly the same batches and keys
    and ends with bitwise-identical parameters on CPU.

    Args:
      state: the initial :class:`TrainState`.
      train_data: an :class:`advjax.data.Dataset` (uint8 images on the host).
      step: ``(state, (x, y), key) -> (state, metrics)``, from :func:`make_step`.
      epochs: number of passes over ``train_data``.
      batch_size: examples per step (the last incomplete batch is dropped).
      key: the run's PRNG key; data order and step keys derive from it.
      eval_fn: ``state -> {"clean_acc": ..., "adv_acc": ...}`` on held-out data,
        run after every epoch and logged under ``eval/``.
      checkpoint_dir: where to write checkpoints (:func:`save_checkpoint`):
        ``steps/`` after every epoch and every ``checkpoint_every`` steps (orbax
        keeps the ``keep`` newest) and ``best/`` (highest ``best_metric``);
        ``None`` disables checkpoints.
      checkpoint_every: also checkpoint every this many steps.
      keep: number of step checkpoints kept.
      best_metric: the logged metric that selects the ``best`` checkpoint.
      metrics_path: a JSONL file receiving one record per epoch.
      progress: show a tqdm progress bar.
      resume: continue from the latest checkpoint in ``checkpoint_dir`` if any.
      max_steps: stop (with a checkpoint) once the state reaches this step,
        e.g. to emulate an interruption.
      early_stopping: an :class:`EarlyStopping` rule checked after every
        epoch's evaluation (patience, or a sudden drop such as FGSM's
        catastrophic overfitting); the reason is in ``FitResult.stopped``.
      tensorboard_dir: also write each epoch's scalars to TensorBoard there
        (needs the optional ``tensorboardX``; without it a warning says so and
        training goes on).
      keep_best_state: keep a host copy of the state at the best epoch (by
        ``best_metric``) in ``FitResult.best_state``; with ``checkpoint_dir``
        the same state is also saved in ``checkpoint_dir/best``.

    Returns:
      A :class:`FitResult`.

    Example:
      >>> import jax, numpy as np, optax
      >>> from advjax import data, models, train
      >>> ds = data.Dataset(np.zeros((8, 28, 28, 1), np.uint8), np.zeros(8, np.int32), "z", 10)
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> result = train.fit(state, ds, train.make_step(train.standard()), epochs=1,
      ...                    batch_size=4, key=jax.random.key(1), progress=False)
      >>> int(result.state.step)
      2
    """
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    keep = check_positive_int(keep, "keep")
    data_key, step_key = jax.random.split(key)
    per_epoch = num_batches(len(train_data), batch_size)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    epoch, start_batch = 0, 0
    carried: dict[str, list[float]] = {}  # this epoch's step metrics from before a resume
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)

    if checkpoint_dir is not None and resume:
        if latest_checkpoint(checkpoint_dir / STEPS) is not None:
            state, meta = restore_checkpoint(checkpoint_dir / STEPS, state)
            epoch, start_batch = meta["epoch"], meta["batch"]
            history, best = meta.get("history", []), meta.get("best")
            carried = meta.get("epoch_metrics", {})
    stopped = early_stopping.check(history) if early_stopping is not None and history else None
    best_state = None
    if keep_best_state and best is not None and checkpoint_dir is not None:
        if latest_checkpoint(checkpoint_dir / BEST) is not None:
            best_state = jax.device_get(restore_checkpoint(checkpoint_dir / BEST, state)[0])
    writer = _TensorBoard(Path(tensorboard_dir)) if tensorboard_dir is not None else None

    def meta_at(epoch_index: int, batch_index: int, epoch_metrics: dict) -> dict:
        return {
            "epoch": epoch_index,
            "batch": batch_index,
            "step": int(state.step),
            "history": history,
            "best": best,
            "epoch_metrics": epoch_metrics,
        }

    def checkpoint(epoch_index: int, batch_index: int, epoch_metrics: dict) -> None:
        if checkpoint_dir is None:
            return
        meta = meta_at(epoch_index, batch_index, epoch_metrics)
        save_checkpoint(checkpoint_dir / STEPS, state, meta, keep=keep)

    started = time.perf_counter()
    bar = tqdm(
        total=epochs * per_epoch,
        initial=epoch * per_epoch + start_batch,
        disable=not progress,
        desc="train",
        unit="step",
        leave=False,
    )
    while epoch < epochs and stopped is None:
        collected = []
        for batch_index, batch in enumerate(
            batches(train_data, batch_size, key=data_key, epoch=epoch, start_batch=start_batch),
            start=start_batch,
        ):
            state, metrics = step(state, batch, step_key)
            collected.append(metrics)
            bar.update(1)
            reached_max = max_steps is not None and int(state.step) >= max_steps
            at_interval = checkpoint_every and int(state.step) % checkpoint_every == 0
            if reached_max or (at_interval and batch_index + 1 < per_epoch):
                checkpoint(epoch, batch_index + 1, _join(carried, collected))
            if reached_max:
                bar.close()
                if writer is not None:
                    writer.close()
                return FitResult(
                    state, history, best, time.perf_counter() - started, stopped, best_state
                )
        record = {
            "epoch": epoch + 1,
            "step": int(state.step),
            **_epoch_means(_join(carried, collected)),
        }
        if eval_fn is not None:
            record.update({f"eval/{k}": float(v) for k, v in eval_fn(state).items()})
        record["time/seconds"] = time.perf_counter() - started
        history.append(record)
        if progress:
            shown = {
                k.split("/")[-1]: round(v, 4)
                for k, v in record.items()
                if k.startswith("eval/") or k in ("train/loss",)
            }
            bar.set_postfix(shown)
            tqdm.write(f"epoch {epoch + 1}/{epochs}: " + json.dumps(shown))
        if metrics_path is not None:
            _append_jsonl(metrics_path, record)
        if writer is not None:
            writer.write(record)
        epoch, start_batch, carried = epoch + 1, 0, {}
        if best_metric in record and (best is None or record[best_metric] > best[best_metric]):
            best = {"epoch": epoch, "step": int(state.step), best_metric: record[best_metric]}
            if keep_best_state:
                best_state = jax.device_get(state)
            if checkpoint_dir is not None:
                save_checkpoint(checkpoint_dir / BEST, state, meta_at(epoch, 0, {}), keep=1)
        if early_stopping is not None:
            stopped = early_stopping.check(history)
            if stopped is not None:
                record["stopped"] = stopped
                if progress:
                    tqdm.write(f"early stop after epoch {epoch}: {stopped}")
        checkpoint(epoch, 0, {})
    bar.close()
    if writer is not None:
        writer.close()
    return FitResult(state, history, best, time.perf_counter() - started, stopped, best_state)
