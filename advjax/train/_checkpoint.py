"""Checkpoints of a whole training run, kept by orbax-checkpoint's ``CheckpointManager``.

A checkpoint directory holds one orbax step folder per saved step. Each step
has two items: ``state`` (params, optimizer state, BatchNorm statistics, step
and the objective's carry, written with orbax's standard handler) and ``meta``
(JSON: the data position ``epoch``/``batch``, the history and best record so
far, the metrics of a partly run epoch). Orbax writes a step to a temporary
folder and renames it when complete, so an interrupted save is never listed
or restored; it also deletes all but the ``keep`` newest steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from advjax.train._state import TrainState

STATE = "state"
META = "meta"


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
    with _manager(directory, keep) as manager:
        if step in manager.all_steps():
            manager.delete(step)
        manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.StandardSave(jax.device_get(_arrays_of(state))),
                    META: ocp.args.JsonSave(meta),
                }
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
    try:
        with _manager(directory) as manager:
            return dict(
                manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[META]
            )
    except Exception as error:  # orbax raises several types for unreadable files
        raise CheckpointError(
            f"cannot read the meta data of step {step} in {directory}: {error}"
        ) from error


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
        or the saved arrays have other shapes (a different model or optimizer).

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
    target = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), np.asarray(leaf).dtype),
        jax.device_get(_arrays_of(state)),
    )
    try:
        with _manager(directory) as manager:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    **{STATE: ocp.args.StandardRestore(target), META: ocp.args.JsonRestore()}
                ),
            )
    except Exception as error:  # orbax raises several types for mismatched trees
        raise CheckpointError(
            f"cannot restore step {step} of {directory}: {error}. "
            "Was it written for a different model or optimizer?"
        ) from error
    arrays = restored[STATE]
    state = state.replace(
        params=arrays["params"],
        opt_state=arrays["opt_state"],
        batch_stats=arrays["batch_stats"] if state.batch_stats else state.batch_stats,
        step=arrays["step"],
        carry=arrays["carry"] if state.carry is not None else state.carry,
    )
    return state, dict(restored[META])
