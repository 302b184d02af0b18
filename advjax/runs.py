"""Run directories: a trained model saved beside its report, and loaded back.

A run directory holds ``config.json`` (the zoo model's name, its keyword
arguments and the input shape), ``model/`` (its parameters and BatchNorm
statistics, written by orbax) and whatever the run wrote besides (checkpoints,
metrics, reports). :func:`load_run` rebuilds the model and its eval-mode logits
function from it, so any script or notebook can attack a trained model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from advjax import models

CONFIG = "config.json"
MODEL_DIR = "model"


class RunError(ValueError):
    """A run directory is missing, incomplete or inconsistent.

    A ``ValueError``, raised by :func:`load_run` with a message that says what
    is missing and how to make it.

    Example:
      >>> import tempfile
      >>> from advjax.runs import RunError, load_run
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     try:
      ...         load_run(tmp)
      ...     except RunError as error:
      ...         print(type(error).__name__, isinstance(error, ValueError))
      RunError True
    """


@dataclasses.dataclass
class LoadedRun:
    """A trained model loaded from a run directory.

    Attributes:
      model: the Flax module.
      variables: ``{"params": ..., "batch_stats": ...}`` (numpy arrays on the
        host; ``batch_stats`` only for BatchNorm models).
      logits_fn: the eval-mode logits function ``x[B, H, W, C] -> logits[B, K]``
        (attacks use this).
      config: the run's ``config.json`` as a dict.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models
      >>> from advjax.runs import LoadedRun
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> run = LoadedRun(model, variables, models.eval_logits_fn(model, variables),
      ...                 {"model": "mlp"})
      >>> run.logits_fn(jnp.zeros((2, 4, 4, 1))).shape
      (2, 10)
    """

    model: Any
    variables: dict
    logits_fn: Callable[[jax.Array], jax.Array]
    config: dict


def save_run_model(
    run_dir: str | Path,
    variables: dict,
    *,
    model_name: str,
    input_shape: tuple[int, ...],
    model_kwargs: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Saves a zoo model's variables and config into ``run_dir``.

    Args:
      run_dir: the run directory (created if needed).
      variables: the model's variables (``params`` and optional ``batch_stats``).
      model_name: a name known to :func:`advjax.models.get_model`.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      model_kwargs: keyword arguments of the model's constructor.
      extra: more JSON-ready facts for ``config.json`` (training recipe, data).

    Returns:
      The run directory, as an absolute ``Path``.

    Raises:
      ValueError: ``model_name`` is not a zoo model (nothing is written then,
        beyond creating ``run_dir``).

    Example:
      >>> import json, tempfile
      >>> import jax
      >>> from advjax import models
      >>> from advjax.runs import save_run_model
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     run_dir = save_run_model(tmp, variables, model_name="mlp",
      ...                              model_kwargs={"hidden": [8]}, input_shape=(4, 4, 1),
      ...                              extra={"epochs": 1})
      ...     print(sorted(p.name for p in run_dir.iterdir()))
      ...     print(json.loads((run_dir / "config.json").read_text())["input_shape"])
      ['config.json', 'model']
      [4, 4, 1]
    """
    run_dir = Path(run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    models.get_model(model_name, **(model_kwargs or {}))  # fail early on an unknown model
    checkpointer = ocp.StandardCheckpointer()
    target = run_dir / MODEL_DIR
    if target.exists():
        import shutil

        shutil.rmtree(target)
    checkpointer.save(target, jax.device_get(dict(variables)))
    checkpointer.wait_until_finished()
    config = {
        "model": model_name,
        "model_kwargs": model_kwargs or {},
        "input_shape": list(input_shape),
        **(extra or {}),
    }
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return run_dir


def load_run(run_dir: str | Path) -> LoadedRun:
    """Loads a run directory back into its model, variables and eval-mode logits.

    Args:
      run_dir: a directory written by ``advjax quickstart`` or :func:`save_run_model`.

    Returns:
      A :class:`LoadedRun`.

    Raises:
      RunError: the directory does not exist, or lacks ``config.json`` or the
        saved model, or they do not match.

    Example:
      >>> import tempfile
      >>> import jax, jax.numpy as jnp
      >>> import advjax
      >>> from advjax import models
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> x, y = jnp.full((2, 4, 4, 1), 0.5), jnp.array([0, 1])
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = advjax.runs.save_run_model(tmp, variables, model_name="mlp",
      ...                                    model_kwargs={"hidden": [8]},
      ...                                    input_shape=(4, 4, 1))
      ...     run = advjax.runs.load_run(tmp)
      >>> run.config["model"], run.logits_fn(x).shape
      ('mlp', (2, 10))
      >>> x_adv = advjax.pgd(0.1, steps=2)(run.logits_fn, x, y, key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - x).max() <= 0.1 + 1e-6)
      True
      >>> advjax.runs.load_run("/nonexistent/run")
      Traceback (most recent call last):
        ...
      advjax.runs.RunError: run directory /nonexistent/run does not exist; ...
    """
    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise RunError(
            f"run directory {run_dir} does not exist; run `advjax quickstart --out {run_dir}` "
            "or pass the directory a training run wrote."
        )
    config_path = run_dir / CONFIG
    if not config_path.is_file():
        raise RunError(f"{run_dir} is not a run directory: {CONFIG} is missing.")
    try:
        config = json.loads(config_path.read_text())
        model = models.get_model(config["model"], **config.get("model_kwargs", {}))
        input_shape = tuple(config["input_shape"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunError(f"{config_path} is corrupt or incomplete: {error!r}.") from error
    model_path = run_dir / MODEL_DIR
    if not model_path.is_dir():
        raise RunError(
            f"{run_dir} lacks its saved model ({MODEL_DIR}/): the run did not finish; "
            "train again or restore a checkpoint."
        )
    abstract = jax.eval_shape(lambda: models.init_model(model, jax.random.key(0), input_shape))
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), abstract)
    try:
        variables = ocp.StandardCheckpointer().restore(model_path, target)
    except Exception as error:  # orbax raises several types for unreadable folders
        raise RunError(f"cannot read the saved model in {model_path}: {error}") from error
    variables = jax.tree.map(np.asarray, dict(variables))
    return LoadedRun(model, variables, models.eval_logits_fn(model, variables), config)
