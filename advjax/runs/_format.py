"""The run directory, format 1: one writer for every training run, one reader.

A run directory holds:

- ``config.json``: ``"format": 1``, the model (a zoo name or an importable
  factory, with its keyword arguments), the input shape and class count, the
  data set, the threat model, the recipe and every hyper-parameter, the seed,
  the versions of advjax, jax, flax, optax and orbax, the git commit of the
  working directory when there is one, and the SHA-256 of every saved array;
- ``model/``: the trained variables (orbax);
- ``checkpoints/``: the resumable training checkpoints (orbax, see
  :func:`advjax.train.fit`); ``metrics.jsonl``: one record per epoch;
- what later commands add: ``eval/<name>/`` and ``certify/<name>/`` reports.

``docs/runs.md`` documents every field.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from advjax import models
from advjax._integrity import mismatched, tree_digests

FORMAT = 1
"""The run-directory format version in ``config.json``; :func:`load_run` refuses others."""
CONFIG = "config.json"
"""The run's configuration file, in the run directory."""
MODEL_DIR = "model"
"""The folder of the run's trained model, in the run directory."""
CHECKPOINTS = "checkpoints"
"""The folder of the run's training checkpoints, in the run directory."""
METRICS = "metrics.jsonl"
"""The run's training metrics (one JSON object a line), in the run directory."""


class RunError(ValueError):
    """A run directory is missing, incomplete, damaged or inconsistent.

    A ``ValueError`` whose message says what is wrong and how to fix it.

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
      directory: the run directory (absolute), or ``None`` when built in memory.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models
      >>> from advjax.runs import LoadedRun
      >>> model = models.get_model("mlp", hidden=(8,))
      >>> variables = models.init_model(model, jax.random.key(0), (4, 4, 1))
      >>> run = LoadedRun(model, variables, models.eval_logits_fn(model, variables),
      ...                 {"model": {"name": "mlp"}})
      >>> run.logits_fn(jnp.zeros((2, 4, 4, 1))).shape
      (2, 10)
    """

    model: Any
    variables: dict
    logits_fn: Callable[[jax.Array], jax.Array]
    config: dict
    directory: Path | None = None


def model_spec(
    name: str | None = None,
    *,
    factory: str | None = None,
    kwargs: dict | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """The ``config.json`` entry that rebuilds a model: a zoo name or an importable factory.

    A model defined in a notebook or script (neither in the zoo nor importable)
    is recorded by its class name alone (``"defined_in_code"``); loading it
    then takes the model itself, ``load_run(run_dir, model=...)``.

    Args:
      name: a name known to :func:`advjax.models.get_model`.
      factory: ``"package.module:function"`` returning a Flax module (or an
        ``advjax.models.NNXModel`` / ``EquinoxModel``), for a model outside the zoo.
      kwargs: JSON-ready keyword arguments of the constructor or factory.
      model: the model itself, when neither ``name`` nor ``factory`` is given.
        Give exactly one of ``name``, ``factory`` and ``model``.

    Returns:
      ``{"name": ..., "factory": ..., "kwargs": {...}}``, plus
      ``"defined_in_code": "<class>"`` for a model given as ``model``.

    Raises:
      RunError: not exactly one of ``name``, ``factory`` and ``model``, an
        unknown zoo name, or a factory that cannot be imported or called.

    Example:
      >>> from advjax.runs import build_model, model_spec
      >>> spec = model_spec(factory="advjax.models:get_model", kwargs={"name": "mlp"})
      >>> type(build_model(spec)).__name__
      'MLP'
    """
    if sum(given is not None for given in (name, factory, model)) != 1:
        raise RunError(
            "give exactly one of a zoo model name, a model factory and the model itself."
        )
    if model is not None:
        return {
            "name": None,
            "factory": None,
            "kwargs": {},
            "defined_in_code": getattr(model, "name", None) or type(model).__name__,
        }
    spec = {"name": name, "factory": factory, "kwargs": dict(kwargs or {})}
    build_model(spec)  # fail now, not when the run is loaded
    return spec


def build_model(spec: dict[str, Any]):
    """The Flax module described by a :func:`model_spec` entry.

    Args:
      spec: ``{"name": ...}`` or ``{"factory": "package.module:function"}``,
        with optional ``"kwargs"``.

    Returns:
      The model.

    Raises:
      RunError: the name is not in the zoo, or the factory cannot be imported.

    Example:
      >>> from advjax.runs import build_model
      >>> build_model({"factory": "no_such_package.models:net"})
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: cannot import the model factory ...
    """
    kwargs = dict(spec.get("kwargs") or {})
    if spec.get("defined_in_code"):
        raise RunError(
            f"the run's model ({spec['defined_in_code']}) was defined in a notebook or script, "
            "not in the zoo or an importable factory: pass the same architecture, "
            "load_run(run_dir, model=...)."
        )
    if spec.get("factory"):
        module_name, _, function_name = str(spec["factory"]).partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError, ValueError) as error:
            raise RunError(
                f"cannot import the model factory {spec['factory']!r} recorded in the run "
                f"({type(error).__name__}: {error}); install or put on PYTHONPATH the package "
                "that defines it, in the form 'package.module:function'."
            ) from error
        try:
            return factory(**kwargs)
        except TypeError as error:
            raise RunError(f"model factory {spec['factory']!r} failed: {error}") from error
    try:
        return models.get_model(spec["name"], **kwargs)
    except (KeyError, ValueError, TypeError) as error:
        raise RunError(f"cannot build zoo model {spec.get('name')!r}: {error}") from error


def git_commit(directory: str | Path = ".") -> str | None:
    """The commit checked out in ``directory``'s git repository, or ``None`` outside one.

    Args:
      directory: any folder inside the repository.

    Returns:
      40 hex digits, with ``"-dirty"`` appended when tracked files have changes.

    Example:
      >>> import tempfile
      >>> from advjax.runs import git_commit
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     git_commit(tmp) is None
      True
    """

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Versions of advjax and its foundations, the JAX backend and the git commit.

    Returns:
      ``{"advjax": ..., "jax": ..., "jaxlib": ..., "flax": ..., "optax": ...,
      "orbax-checkpoint": ..., "backend": ..., "git_commit": ...}``.

    Example:
      >>> from advjax.runs import environment
      >>> sorted(environment())[:3]
      ['advjax', 'backend', 'flax']
    """
    from importlib import metadata

    versions = {}
    for package in ("advjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {**versions, "backend": jax.default_backend(), "git_commit": git_commit()}


def write_config(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Writes ``config.json`` (format 1) into ``run_dir``, created if needed.

    The model's digests already recorded are kept unless ``config`` gives new
    ones, so the run's configuration can be written before training and the
    model saved after it.

    Args:
      run_dir: the run directory.
      config: JSON-ready fields; ``"model"`` must be a :func:`model_spec` and
        ``"input_shape"`` one example's shape.

    Returns:
      The path of ``config.json``.

    Raises:
      RunError: ``config`` lacks ``model`` or ``input_shape``.

    Example:
      >>> import json, tempfile
      >>> from advjax.runs import model_spec, write_config
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = write_config(tmp, {"model": model_spec("mlp"), "input_shape": [4, 4, 1]})
      ...     json.loads(path.read_text())["format"]
      1
    """
    missing = [k for k in ("model", "input_shape") if k not in config]
    if missing:
        raise RunError(f"a run's config needs {missing}.")
    path = Path(run_dir).absolute() / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _read_json(path) if path.is_file() else {}
    merged = {**previous, **config, "format": FORMAT}
    merged["input_shape"] = list(merged["input_shape"])
    merged.setdefault("environment", environment())
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)  # atomic: a crash never leaves half a config
    return path


def save_run_model(
    run_dir: str | Path,
    variables: dict,
    *,
    model_name: str | None = None,
    model_factory: str | None = None,
    model_kwargs: dict | None = None,
    model: Any = None,
    input_shape: tuple[int, ...],
    extra: dict | None = None,
) -> Path:
    """Saves a model's variables into ``run_dir/model`` and its config into ``config.json``.

    The one writer of trained models: the quick start, every recipe and the
    command line use it. The SHA-256 of every array goes into ``config.json``
    (``model_digests``), and :func:`load_run` verifies it.

    Args:
      run_dir: the run directory (created if needed).
      variables: the model's variables (``params`` and optional ``batch_stats``).
      model_name: a name known to :func:`advjax.models.get_model`, or
      model_factory: ``"package.module:function"`` for a model outside the zoo.
      model_kwargs: keyword arguments of the model's constructor or factory.
      model: the model itself, for one defined in a notebook or script (give
        exactly one of ``model_name``, ``model_factory`` and ``model``); the
        run then loads with ``load_run(run_dir, model=...)``.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      extra: more JSON-ready facts for ``config.json`` (recipe, data, threat model).

    Returns:
      The run directory, as an absolute ``Path``.

    Raises:
      RunError: the model cannot be built from its name or factory (nothing is
        written then, beyond creating ``run_dir``).

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
    spec = model_spec(model_name, factory=model_factory, kwargs=model_kwargs, model=model)
    arrays = jax.device_get(dict(variables))
    target = run_dir / MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target, arrays)
        checkpointer.wait_until_finished()
    config = {
        **(extra or {}),
        "model": spec,
        "input_shape": list(input_shape),
        "model_digests": tree_digests(arrays),
    }
    write_config(run_dir, config)
    return run_dir


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(
            f"{path} is unreadable or not JSON ({error}); the file is damaged."
        ) from error
    if not isinstance(value, dict):
        raise RunError(f"{path} holds {type(value).__name__}, not a JSON object.")
    return value


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run directory, checked to be format 1.

    Args:
      run_dir: a run directory.

    Returns:
      The configuration as a dict.

    Raises:
      RunError: the directory or its ``config.json`` is missing or damaged, or
        it was written in another format.

    Example:
      >>> from advjax.runs import read_config
      >>> read_config("/nonexistent/run")
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: run directory /nonexistent/run does not exist; ...
    """
    run_dir = Path(run_dir).absolute()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file; pass the run directory that holds {CONFIG}.")
    if not run_dir.is_dir():
        raise RunError(
            f"run directory {run_dir} does not exist; train one with "
            f"`advjax train RECIPE --out {run_dir}` (recipes: `advjax list`)."
        )
    path = run_dir / CONFIG
    if not path.is_file():
        raise RunError(
            f"{run_dir} is not a run directory: {CONFIG} is missing. Pass the folder that "
            "`advjax train --out` or `advjax quickstart --out` wrote."
        )
    config = _read_json(path)
    if config.get("format") != FORMAT:
        raise RunError(
            f"{path} is in run format {config.get('format')!r}; this advjax reads format "
            f"{FORMAT}. Train the run again with this version (`advjax train`)."
        )
    if "model" not in config or "input_shape" not in config:
        raise RunError(f"{path} lacks 'model' or 'input_shape': the config is incomplete.")
    return config


def load_run(run_dir: str | Path, *, model: Any = None) -> LoadedRun:
    """Loads a run directory back into its model, variables and eval-mode logits.

    The saved arrays are checked against the SHA-256 digests recorded in
    ``config.json``; a flipped bit is an error that names the array.

    Args:
      run_dir: a directory written by ``advjax train``, ``advjax quickstart``
        or :func:`save_run_model`.
      model: the model to load the weights into, instead of the one the config
        names (required for a model saved with ``save_run_model(model=...)``:
        one defined in a notebook or script); the saved arrays must fit it.

    Returns:
      A :class:`LoadedRun`.

    Raises:
      RunError: the directory does not exist, lacks ``config.json`` or the saved
        model, they do not match, or the model fails its integrity check.

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
      >>> run.config["model"]["name"], run.logits_fn(x).shape
      ('mlp', (2, 10))
      >>> x_adv = advjax.pgd(0.1, steps=2)(run.logits_fn, x, y, key=jax.random.key(0))
      >>> bool(jnp.abs(x_adv - x).max() <= 0.1 + 1e-6)
      True
      >>> advjax.runs.load_run("/nonexistent/run")
      Traceback (most recent call last):
        ...
      advjax.runs._format.RunError: run directory /nonexistent/run does not exist; ...
    """
    run_dir = Path(run_dir).absolute()
    config = read_config(run_dir)
    model = build_model(config["model"]) if model is None else model
    input_shape = tuple(config["input_shape"])
    model_path = run_dir / MODEL_DIR
    if not model_path.is_dir() or "model_digests" not in config:
        recipe = config.get("recipe", {}).get("name", "RECIPE")
        raise RunError(
            f"{run_dir} lacks its saved model ({MODEL_DIR}/): the run did not finish. "
            f"Resume it with `advjax train {recipe} --out {run_dir} --resume`."
        )
    abstract = jax.eval_shape(lambda: models.init_model(model, jax.random.key(0), input_shape))
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), abstract)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            variables = checkpointer.restore(model_path, target)
    except Exception as error:  # orbax raises several types for unreadable folders
        raise RunError(
            f"cannot read the saved model in {model_path}: {error}. Its files are damaged or "
            "it was saved for another model than the one being loaded."
        ) from error
    variables = jax.tree.map(np.asarray, dict(variables))
    damaged = mismatched(config["model_digests"], variables)
    if damaged:
        raise RunError(
            f"the saved model in {model_path} fails its SHA-256 check for "
            f"{', '.join(damaged[:5])}: "
            "its files were altered or damaged after saving. Restore them from a copy, or "
            "re-export the model from the run's checkpoints."
        )
    logits_fn = models.eval_logits_fn(model, variables)
    return LoadedRun(model, variables, logits_fn, config, run_dir)
