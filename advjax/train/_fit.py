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
from jax.sharding import Mesh
from tqdm import tqdm  # text bars: tqdm.auto warns in notebooks without ipywidgets

from advjax import parallel
from advjax._checks import check_positive_int
from advjax.data import batches, num_batches
from advjax.train._callbacks import EarlyStopping
from advjax.train._checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from advjax.train._state import TrainState

EvalFn = Callable[[TrainState], dict[str, float]]
STEPS = "steps"
"""``checkpoint_dir/steps``: the ``keep`` newest step checkpoints (resume from the newest)."""
BEST = "best"
"""``checkpoint_dir/best``: the checkpoint with the highest ``best_metric``."""


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: the final state and the per-epoch history.

    Attributes:
      state: the :class:`TrainState` after the last step run.
      history: one record per completed epoch: ``epoch`` (1-based), ``step``,
        ``train/<metric>`` (means of the step metrics over the epoch),
        ``eval/<metric>`` (from ``eval_fn``, if given) and ``time/seconds``
        (wall time since the call started).
      best: ``{"epoch", "step", best_metric: value}`` of the epoch with the
        highest ``best_metric``, or ``None`` if it was never logged.
      train_seconds: wall time of this call's training loop, in seconds.
      stopped: why training stopped early (:class:`EarlyStopping`), or ``None``.
      best_state: a host copy of the state at the best epoch when
        ``keep_best_state=True``, else ``None``.

    Example:
      >>> import jax, numpy as np, optax
      >>> from advjax import data, models, train
      >>> ds = data.Dataset(np.zeros((8, 4, 4, 1), np.uint8), np.zeros(8, np.int32), "z", 10)
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> result = train.fit(state, ds, train.make_step(train.standard()), epochs=2,
      ...                    batch_size=4, key=jax.random.key(1), progress=False,
      ...                    eval_fn=lambda s: {"adv_acc": 0.5}, keep_best_state=True)
      >>> [record["epoch"] for record in result.history], int(result.state.step)
      ([1, 2], 4)
      >>> result.best, int(result.best_state.step), result.stopped
      ({'epoch': 1, 'step': 2, 'eval/adv_acc': 0.5}, 2, None)
    """

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
    mesh: Mesh | None = None,
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
      resume: continue from the latest checkpoint in ``checkpoint_dir`` if any;
        a checkpoint that fails its SHA-256 check is skipped with a warning
        naming it, and the newest intact one is used.
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
      mesh: the devices each batch is split over (data parallel: parameters
        replicated on the mesh, each batch split over it, gradients averaged
        over the global batch by the step's own ``jit``). ``None`` takes
        :func:`advjax.parallel.default_mesh`: every local device when there are
        several (a CPU split with :func:`advjax.parallel.use_cpu_devices`, or
        several GPUs), else the one device. When the device count does not
        divide ``batch_size`` the largest part of the mesh that does is used
        (:func:`advjax.parallel.sub_mesh`); a one-device mesh turns it off.
        The parameters equal the one-device run's up to float order (the
        cross-device gradient sum). The returned state stays on the mesh.

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
    checkpoints = _Checkpoints(Path(checkpoint_dir), keep) if checkpoint_dir is not None else None
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
    run, best_state = _Progress(), None
    if checkpoints is not None and resume:
        state, run, best_state = checkpoints.resume(state, keep_best_state)
    stopped = None
    if early_stopping is not None and run.history:
        stopped = early_stopping.check(run.history)
    step, state = _data_parallel(step, state, mesh, batch_size)
    writer = _TensorBoard(Path(tensorboard_dir)) if tensorboard_dir is not None else None
    started = time.perf_counter()
    bar = tqdm(
        total=epochs * per_epoch,
        initial=run.epoch * per_epoch + run.batch,
        disable=not progress,
        desc="train",
        unit="step",
        leave=False,
    )
    try:
        while run.epoch < epochs and stopped is None:
            state, collected, interrupted = _train_epoch(
                state,
                batches(
                    train_data, batch_size, key=data_key, epoch=run.epoch, start_batch=run.batch
                ),
                step,
                step_key,
                run,
                per_epoch=per_epoch,
                bar=bar,
                max_steps=max_steps,
                checkpoint_every=checkpoint_every,
                checkpoints=checkpoints,
            )
            if interrupted:
                break
            record = _epoch_record(run, state, collected, eval_fn, started)
            run.history.append(record)
            _log(record, epochs, bar if progress else None, metrics_path, writer)
            run.epoch, run.batch, run.carried = run.epoch + 1, 0, {}
            if best_metric in record and (
                run.best is None or record[best_metric] > run.best[best_metric]
            ):
                run.best = {"epoch": run.epoch, "step": int(state.step)}
                run.best[best_metric] = record[best_metric]
                best_state = jax.device_get(state) if keep_best_state else best_state
                if checkpoints is not None:
                    checkpoints.save_best(state, run)
            if early_stopping is not None:
                stopped = early_stopping.check(run.history)
                if stopped is not None:
                    record["stopped"] = stopped
                    if progress:
                        tqdm.write(f"early stop after epoch {run.epoch}: {stopped}")
            if checkpoints is not None:
                checkpoints.save(state, run, {})
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    return FitResult(state, run.history, run.best, seconds, stopped, best_state)


def _data_parallel(step: Callable, state: TrainState, mesh: Mesh | None, batch_size: int):
    """``(step, state)`` with each batch split over ``mesh`` (default: every device).

    Data parallelism by placement: the state is replicated on the mesh (arrays
    already placed on it keep their sharding) and every batch is split over it,
    so the step's own ``jit`` compiles the partitioned program. A step that
    chooses its compiled stage on the host (:func:`staged_step`) works as is.
    """
    mesh = parallel.default_mesh() if mesh is None else mesh
    if mesh is None:
        return step, state
    mesh = parallel.sub_mesh(mesh, batch_size)
    if mesh.size == 1:
        return step, state
    split = parallel.batch_sharding(mesh)

    def split_step(state, batch, key):
        return step(state, jax.device_put(batch, split), key)

    return split_step, parallel.shard_train_state(state, mesh)


@dataclasses.dataclass
class _Progress:
    """Where a run stands: what a checkpoint's meta data holds, and what resuming restores."""

    epoch: int = 0
    batch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: dict[str, Any] | None = None
    carried: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    """This epoch's per-step metrics from before a resume."""

    def meta(self, state: TrainState, epoch_metrics: dict) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": int(state.step),
            "history": self.history,
            "best": self.best,
            "epoch_metrics": epoch_metrics,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _Progress:
        return cls(
            meta["epoch"],
            meta["batch"],
            meta.get("history", []),
            meta.get("best"),
            meta.get("epoch_metrics", {}),
        )


@dataclasses.dataclass
class _Checkpoints:
    """``directory/steps`` (orbax keeps the ``keep`` newest) and ``directory/best``."""

    directory: Path
    keep: int

    def save(self, state: TrainState, run: _Progress, epoch_metrics: dict) -> None:
        save_checkpoint(
            self.directory / STEPS, state, run.meta(state, epoch_metrics), keep=self.keep
        )

    def save_best(self, state: TrainState, run: _Progress) -> None:
        save_checkpoint(self.directory / BEST, state, run.meta(state, {}), keep=1)

    def resume(self, state: TrainState, keep_best_state: bool):
        """``(state, progress, best_state)`` from the newest checkpoint, or as given if none."""
        restored = _newest_intact(self.directory / STEPS, state)
        if restored is None:
            return state, _Progress(), None
        state, meta = restored
        run = _Progress.from_meta(meta)
        best_state = None
        if keep_best_state and run.best is not None:
            if latest_checkpoint(self.directory / BEST) is not None:
                best_state = jax.device_get(restore_checkpoint(self.directory / BEST, state)[0])
        return state, run, best_state


def _newest_intact(directory: Path, state: TrainState):
    """``(state, meta)`` of the newest checkpoint that passes its checks, or ``None`` if none.

    A damaged checkpoint is skipped with a warning that names it; when every
    checkpoint is damaged the error of the newest one is raised.
    """
    steps = list_checkpoints(directory)
    errors = []
    for step in reversed(steps):
        try:
            restored = restore_checkpoint(directory, state, step)
        except CheckpointError as error:
            errors.append(error)
            continue
        for error in errors:
            warnings.warn(
                f"skipped a damaged checkpoint; resuming from step {step} instead. {error}",
                stacklevel=4,
            )
        return restored
    if errors:
        raise CheckpointError(
            f"no intact checkpoint in {directory} to resume from (steps {steps}); "
            f"the newest fails with: {errors[0]}"
        ) from errors[0]
    return None


def _train_epoch(
    state,
    epoch_batches,
    step,
    step_key,
    run: _Progress,
    *,
    per_epoch: int,
    bar,
    max_steps: int | None,
    checkpoint_every: int | None,
    checkpoints: _Checkpoints | None,
):
    """Runs the rest of one epoch; ``(state, step_metrics, stopped_at_max_steps)``.

    Checkpoints every ``checkpoint_every`` steps inside the epoch (the epoch's
    end is checkpointed by the caller) and when ``max_steps`` is reached.
    """
    collected = []
    for batch_index, batch in enumerate(epoch_batches, start=run.batch):
        state, metrics = step(state, batch, step_key)
        collected.append(metrics)
        bar.update(1)
        reached_max = max_steps is not None and int(state.step) >= max_steps
        at_interval = checkpoint_every and int(state.step) % checkpoint_every == 0
        if checkpoints is not None and (
            reached_max or (at_interval and batch_index + 1 < per_epoch)
        ):
            position = dataclasses.replace(run, batch=batch_index + 1)
            checkpoints.save(state, position, _join(run.carried, collected))
        if reached_max:
            return state, collected, True
    return state, collected, False


def _epoch_record(run: _Progress, state, collected, eval_fn, started: float) -> dict[str, Any]:
    """The epoch's log record: step-metric means, the held-out evaluation, the time."""
    record = {
        "epoch": run.epoch + 1,
        "step": int(state.step),
        **_epoch_means(_join(run.carried, collected)),
    }
    if eval_fn is not None:
        record.update({f"eval/{k}": float(v) for k, v in eval_fn(state).items()})
    record["time/seconds"] = time.perf_counter() - started
    return record


def _log(record: dict, epochs: int, bar, metrics_path: Path | None, writer) -> None:
    """The record to the progress bar (``bar`` not ``None``), the JSONL file and TensorBoard."""
    if bar is not None:
        shown = {
            k.split("/")[-1]: round(v, 4)
            for k, v in record.items()
            if k.startswith("eval/") or k in ("train/loss",)
        }
        bar.set_postfix(shown)
        tqdm.write(f"epoch {record['epoch']}/{epochs}: " + json.dumps(shown))
    if metrics_path is not None:
        _append_jsonl(metrics_path, record)
    if writer is not None:
        writer.write(record)
