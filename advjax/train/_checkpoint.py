"""Checkpoints of a whole training run, kept by orbax-checkpoint's ``CheckpointManager``.

A checkpoint directory holds one orbax step folder per saved step. Each step
has two items: ``state`` (params, optimizer state, BatchNorm statistics, step
and the objective's carry, written with orbax's standard handler) and ``meta``
(JSON: the data position ``epoch``/``batch``, the history and best record so
far, the metrics of a partly run epoch). Orbax writes a step to a temporary
folder and renames it when complete, so an interrupted save is never listed
or restored; it also deletes all but the ``keep`` newest steps.

Every step records the SHA-256 of each saved array and of its meta data
(``meta["integrity"]``); :func:`restore_checkpoint` verifies them, so a bit
flipped on disk after the save is an error that names the step and the arrays
it changed, never a silently different state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from advjax._integrity import json_digest, leaves_by_path, mismatched, tree_digests
from advjax.train._state import TrainState

STATE = "state"
META = "meta"
INTEGRITY = "integrity"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, empty, or does not match the state.

    A ``ValueError``; raised by :func:`read_meta` and :func:`restore_checkpoint`.

    Example:
      >>> from advjax import train
      >>> try:
      ...     train.read_meta("/nonexistent")
      ... except train.CheckpointError:
      ...     print("no checkpoint")
      no checkpoint
    """


def _arrays_of(state: TrainState) -> dict:
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "batch_stats": state.batch_stats if state.batch_stats else {},
        "step": state.step,
        "carry": state.carry if state.carry is not None else {},
    }


def _manager(directory: str | Path, keep: int | None = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(
        Path(directory).absolute(), item_names=(STATE, META), options=options
    )


def save_checkpoint(
    directory: str | Path, state: TrainState, meta: dict[str, Any], *, keep: int | None = None
) -> int:
    """Saves ``state`` and ``meta`` as step ``state.step`` of the checkpoint ``directory``.

    A step that is already saved is replaced. Orbax keeps the ``keep`` newest
    steps (``None``: all of them).

    Args:
      directory: the checkpoint directory (created if absent).
      state: the :class:`TrainState` to save.
      meta: JSON-serialisable data saved beside it (e.g. the data position).
      keep: how many of the newest steps to keep.

    Returns:
      The step saved (``int(state.step)``).

    Example:
      >>> import jax, optax, tempfile
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     train.save_checkpoint(tmp, state, {"epoch": 0, "batch": 0})
      ...     train.list_checkpoints(tmp)
      0
      [0]
    """
    step = int(state.step)
    arrays = jax.device_get(_arrays_of(state))
    meta = {k: v for k, v in meta.items() if k != INTEGRITY}
    shapes = {
        k: [str(np.asarray(v).dtype), list(np.shape(v))] for k, v in leaves_by_path(arrays).items()
    }
    meta[INTEGRITY] = {"arrays": tree_digests(arrays), "shapes": shapes}
    meta[INTEGRITY]["meta"] = json_digest({k: v for k, v in meta.items() if k != INTEGRITY})
    with _manager(directory, keep) as manager:
        if step in manager.all_steps():
            manager.delete(step)
        manager.save(
            step,
            args=ocp.args.Composite(
                **{STATE: ocp.args.StandardSave(arrays), META: ocp.args.JsonSave(meta)}
            ),
        )
        manager.wait_until_finished()
    return step


def list_checkpoints(directory: str | Path) -> list[int]:
    """The complete checkpoint steps in ``directory``, oldest first (``[]`` if none).

    Args:
      directory: A checkpoint directory (need not exist).

    Returns:
      The saved steps (``int``), ascending.

    Example:
      >>> import tempfile
      >>> from advjax import train
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     train.list_checkpoints(tmp)
      []
    """
    if not Path(directory).is_dir():
        return []
    with _manager(directory) as manager:
        return sorted(manager.all_steps())


def latest_checkpoint(directory: str | Path) -> int | None:
    """The newest complete checkpoint step in ``directory``, or ``None``.

    Args:
      directory: A checkpoint directory (need not exist).

    Returns:
      The largest saved step, or ``None`` without checkpoints.

    Example:
      >>> from advjax import train
      >>> train.latest_checkpoint("/nonexistent") is None
      True
    """
    steps = list_checkpoints(directory)
    return steps[-1] if steps else None


def _step_to_read(directory: str | Path, step: int | None) -> int:
    steps = list_checkpoints(directory)
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist.")
    if not steps:
        raise CheckpointError(
            f"{directory} holds no complete checkpoint (an interrupted save is never listed)."
        )
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(f"{directory} has no checkpoint of step {step}; it has {steps}.")
    return step


def read_meta(directory: str | Path, step: int | None = None) -> dict[str, Any]:
    """The ``meta`` saved with a checkpoint (the newest one unless ``step`` is given).

    Args:
      directory: The checkpoint directory.
      step: The checkpoint's step, or ``None`` for the newest.

    Returns:
      The JSON dictionary given to :func:`save_checkpoint`.

    Raises:
      CheckpointError: No such directory or step, or the saved JSON is unreadable.

    Example:
      >>> import jax, optax, tempfile
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = train.save_checkpoint(tmp, state, {"epoch": 3, "batch": 0})
      ...     train.read_meta(tmp)["epoch"]
      3
    """
    step = _step_to_read(directory, step)
    return _verified_meta(directory, step, _read_raw_meta(directory, step))


def _read_raw_meta(directory, step: int) -> dict[str, Any]:
    try:
        with _manager(directory) as manager:
            restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            return dict(restored[META])
    except Exception as error:  # orbax raises several types for unreadable files
        raise CheckpointError(
            f"cannot read the meta data of step {step} in {Path(directory) / str(step) / META}: "
            f"{error}. The file is damaged; resume from an older step or train again."
        ) from error


def _verified_meta(directory, step: int, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` without its integrity record, after checking the record's own digest."""
    integrity = meta.pop(INTEGRITY, None)
    where = Path(directory) / str(step) / META
    if not isinstance(integrity, dict) or integrity.get("meta") != json_digest(meta):
        raise CheckpointError(
            f"checkpoint step {step}: {where} fails its integrity check (its SHA-256 record is "
            "missing or does not match its contents): the file was altered or damaged after "
            "it was saved. Resume from an older step or train again."
        )
    return meta


def _shape_mismatches(meta_integrity: dict, target) -> list[str]:
    saved = {k: list(v[1]) for k, v in meta_integrity.get("shapes", {}).items()}
    wanted = {k: list(v.shape) for k, v in leaves_by_path(target).items()}
    return sorted(
        f"{k}: saved shape {saved.get(k)}, expected {wanted.get(k)}"
        for k in set(saved) | set(wanted)
        if saved.get(k) != wanted.get(k)
    )


def _saved_dtypes(meta_integrity: dict, target):
    """``target`` with each leaf's dtype as saved, so the digests are checked on the saved bytes."""
    saved = meta_integrity.get("shapes", {})
    paths = iter(leaves_by_path(target))
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, np.dtype(saved[next(paths)][0])), target
    )


def restore_checkpoint(
    directory: str | Path, state: TrainState, step: int | None = None
) -> tuple[TrainState, dict[str, Any]]:
    """Restores a checkpoint (the newest unless ``step`` is given) into the structure of ``state``.

    Args:
      directory: a checkpoint directory written by :func:`save_checkpoint`.
      state: a state with the same model and optimizer (its values are ignored).
      step: which step to restore; ``None`` means the newest.

    Returns:
      ``(restored_state, meta)``.

    Raises:
      CheckpointError: The directory is missing or empty, the step is absent,
        the saved arrays have other shapes (a different model or optimizer),
        or a file fails its SHA-256 check (the message names the step, the
        folder and the arrays).

    Example:
      >>> import jax, optax, tempfile
      >>> from advjax import models, train
      >>> model = models.get_model("mlp")
      >>> v = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> state = train.TrainState.create(apply_fn=model.apply, params=v["params"],
      ...                                 tx=optax.sgd(0.1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = train.save_checkpoint(tmp, state.replace(step=7), {"epoch": 1, "batch": 2})
      ...     restored, meta = train.restore_checkpoint(tmp, state)
      >>> int(restored.step), meta["batch"]
      (7, 2)
    """
    step = _step_to_read(directory, step)
    raw_meta = _read_raw_meta(directory, step)
    integrity = raw_meta.get(INTEGRITY)
    meta = _verified_meta(directory, step, raw_meta)
    target = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), np.asarray(leaf).dtype),
        jax.device_get(_arrays_of(state)),
    )
    where = Path(directory) / str(step) / STATE
    different = _shape_mismatches(integrity, target)
    if different:
        raise CheckpointError(
            f"checkpoint step {step} in {directory} was written for a different model or "
            f"optimizer: {'; '.join(different[:5])}. Restore it into the state it was saved from."
        )
    try:
        with _manager(directory) as manager:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    **{STATE: ocp.args.StandardRestore(_saved_dtypes(integrity, target))}
                ),
            )
    except Exception as error:  # orbax raises several types for unreadable files
        raise CheckpointError(
            f"cannot read checkpoint step {step} from {where}: its files are damaged "
            f"(truncated or altered after saving): {error}"
        ) from error
    arrays = jax.device_get(restored[STATE])
    damaged = mismatched(integrity["arrays"], arrays)
    arrays = jax.tree.map(lambda a, t: np.asarray(a, t.dtype), arrays, target)
    if damaged:
        raise CheckpointError(
            f"checkpoint step {step}: the data files in {where} fail their SHA-256 check for "
            f"{', '.join(damaged[:5])}: they were altered or damaged after saving."
        )
    state = state.replace(
        params=arrays["params"],
        opt_state=arrays["opt_state"],
        batch_stats=arrays["batch_stats"] if state.batch_stats else state.batch_stats,
        step=arrays["step"],
        carry=arrays["carry"] if state.carry is not None else state.carry,
    )
    return state, meta
