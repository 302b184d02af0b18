"""A recipe's configuration: a typed dataclass, overridden by ``key=value`` strings (OmegaConf)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


class RecipeError(ValueError):
    """An unknown recipe, an unknown or ill-typed override, or a run that cannot be resumed.

    A ``ValueError`` whose message names the cause and the fix; the command
    line turns it into exit status 2.

    Example:
      >>> from advjax.recipes import RecipeError, get_recipe
      >>> try:
      ...     get_recipe("pgd-at")
      ... except RecipeError as error:
      ...     print(str(error).split(";")[0])
      unknown recipe 'pgd-at'
    """


@dataclasses.dataclass
class RecipeConfig:
    """The settings every recipe has; each recipe's subclass adds its own and sets defaults.

    Attributes:
      model: a zoo model (``advjax list``).
      init: ``"torch"`` (PyTorch's default initialisation, as the reference
        code) or ``"flax"``.
      data: a named data set (``advjax list``); ``data_dir`` for those that read files.
      data_dir: the folder holding the data set's files, if it reads any.
      train_size: train on a fixed random subset of this many images (0: all).
      epochs: passes over the training set.
      batch_size: examples per step.
      optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
      lr: peak (triangular), initial (piecewise, cosine) or constant learning rate.
      lr_schedule: ``"triangular"`` (Wong et al. 2020, peak at 40%),
        ``"piecewise"`` (10x decay at each of ``lr_milestones``), ``"cosine"``
        or ``"constant"``.
      lr_milestones: fractions of training where ``"piecewise"`` divides the rate by 10.
      momentum: SGD's momentum.
      weight_decay: L2 weight decay added to the gradient (PyTorch's SGD convention).
      eps: the threat model's budget, in the norm ``norm``: the training target
        and the evaluation budget.
      norm: the threat model, ``"linf"`` or ``"l2"``.
      ramp: the fraction of training over which the training budget ramps
        linearly from 0 to ``eps`` (0: the full budget from the first step).
      seed: the PRNG seed of initialisation, data order and attacks.
      augment: ``"none"``, or ``"crop_flip"`` (random 4-pixel-padded crops and
        horizontal flips, :func:`advjax.data.random_crop_flip`, the CIFAR-10
        papers' augmentation), applied on the device inside each step.
      precision: ``"fp32"``, or ``"bf16"`` (the model computes in bfloat16 with
        fp32 parameters, inputs and loss: :func:`advjax.models.mixed_precision`;
        fast AT's mixed-precision training). Evaluation always runs in fp32.
      monitor_examples: training images checked after every epoch with
        clean and PGD-``monitor_steps`` accuracy (0: no check).
      monitor_steps: PGD steps of that check (step ``eps / 4``).
      checkpoint_every: also checkpoint every this many steps (0: at epoch ends only).
      eval_attacks: the final evaluation's attacks (``advjax list``), each
        stored as a report in the run.
      eval_examples: test examples evaluated (the first ones).
      eval_steps: PGD's iterations (APGD, Square and the others keep their papers' defaults).
      eval_restarts: PGD restarts.
      eval_step_size: PGD's step; 0 means ``2.5 * eps / eval_steps``.

    Example:
      >>> from advjax.recipes import RecipeConfig
      >>> RecipeConfig().eps, RecipeConfig().eval_attacks
      (0.3, ['pgd', 'apgd-ce'])
    """

    model: str = "fast_mnist"
    init: str = "flax"
    data: str = "mnist-embedded"
    data_dir: str | None = None
    train_size: int = 0
    epochs: int = 12
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 5e-3
    lr_schedule: str = "triangular"
    lr_milestones: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.75])
    momentum: float = 0.9
    weight_decay: float = 0.0
    eps: float = 0.3
    norm: str = "linf"
    ramp: float = 0.3
    seed: int = 0
    augment: str = "none"
    precision: str = "fp32"
    monitor_examples: int = 500
    monitor_steps: int = 10
    checkpoint_every: int = 0
    eval_attacks: list[str] = dataclasses.field(default_factory=lambda: ["pgd", "apgd-ce"])
    eval_examples: int = 1000
    eval_steps: int = 50
    eval_restarts: int = 10
    eval_step_size: float = 0.01


CHOICES = {
    "init": ("torch", "flax"),
    "optimizer": ("adam", "sgd"),
    "lr_schedule": ("triangular", "piecewise", "cosine", "constant"),
    "norm": ("linf", "l2"),
    "augment": ("none", "crop_flip"),
    "precision": ("fp32", "bf16"),
}


def configure(config_type: type, overrides: Sequence[str] = (), base: dict | None = None):
    """The recipe's configuration: its defaults, then ``base``, then ``key=value`` overrides.

    Overrides are typed by the dataclass (OmegaConf structured configs): an
    unknown key or a value of the wrong type is an error that lists the keys.

    Args:
      config_type: a :class:`RecipeConfig` subclass.
      overrides: strings ``"key=value"`` (``"eval_attacks=[pgd,fgsm]"`` for lists).
      base: field values applied before the overrides (e.g. a stored run's config).

    Returns:
      An instance of ``config_type``.

    Raises:
      RecipeError: an unknown key, an ill-typed value, a malformed override, or
        a value outside a field's choices.

    Example:
      >>> from advjax.recipes import RecipeConfig, configure
      >>> configure(RecipeConfig, ["epochs=3", "lr=1e-3"]).epochs
      3
      >>> configure(RecipeConfig, ["epoch=3"])
      Traceback (most recent call last):
        ...
      advjax.recipes._config.RecipeError: unknown key 'epoch' ...
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    malformed = [o for o in overrides if "=" not in o or not o.split("=", 1)[0]]
    if malformed:
        raise RecipeError(f"overrides must read key=value, got {malformed}.")
    keys = [f.name for f in dataclasses.fields(config_type)]
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key not in keys:
            close = [k for k in keys if key in k or k in key]
            raise RecipeError(
                f"unknown key {key!r} for this recipe"
                + (f"; did you mean {close}?" if close else "")
                + f" Its keys: {keys}."
            )
    try:
        merged = OmegaConf.structured(config_type)
        if base:
            merged = OmegaConf.merge(merged, {k: v for k, v in base.items() if k in keys})
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        message = str(error).splitlines()[0]
        raise RecipeError(
            f"bad override: {message}. Keys and types: {_types(config_type)}."
        ) from error
    for name, allowed in CHOICES.items():
        if hasattr(config, name) and getattr(config, name) not in allowed:
            raise RecipeError(
                f"{name} must be one of {list(allowed)}, got {getattr(config, name)!r}."
            )
    check_config(config)
    return config


AT_LEAST_ONE = ("epochs", "batch_size", "eval_examples", "eval_steps", "eval_restarts", "replays")
NON_NEGATIVE = (
    "train_size",
    "monitor_examples",
    "monitor_steps",
    "checkpoint_every",
    "momentum",
    "weight_decay",
    "ramp",
    "eval_step_size",
    "train_eps",
    "warmup",
    "ramp_epochs",
    "beta",
    "awp_gamma",
    "awp_warmup",
    "alpha",
    "free_step_size",
    "gradient_weight",
    "max_drop",
    "kappa_start",
    "kappa_end",
    "beta_start",
    "beta_end",
    "certify_examples",
)
POSITIVE = (
    "lr",
    "eps",
    "temperature",
    "sigma",
    "train_steps",
    "train_step_size",
    "smoothing_samples",
    "smoothing_alpha",
)


def check_config(config) -> None:
    """Refuses, before anything is written or trained, values no recipe can train with.

    Args:
      config: a recipe configuration.

    Raises:
      RecipeError: a count below 1, a negative or non-finite number, a fraction
        above 1, an unknown model, data set or evaluation attack, or a PGD
        evaluation whose steps cannot reach the budget.

    Example:
      >>> from advjax.recipes import RecipeConfig, check_config
      >>> check_config(RecipeConfig(eps=-0.1))
      Traceback (most recent call last):
        ...
      advjax.recipes._config.RecipeError: eps must be finite and > 0, got -0.1.
    """
    import math

    from advjax import data, models, runs

    def number(name):
        value = getattr(config, name, None)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise RecipeError(f"{name} must be a finite number, got {value!r}.")
        return value

    for name in AT_LEAST_ONE:
        if number(name) is not None and number(name) < 1:
            raise RecipeError(f"{name} must be >= 1, got {number(name)}.")
    for name in NON_NEGATIVE:
        if number(name) is not None and number(name) < 0:
            raise RecipeError(f"{name} must be finite and >= 0, got {number(name)}.")
    for name in POSITIVE:
        if number(name) is not None and not number(name) > 0:
            raise RecipeError(f"{name} must be finite and > 0, got {number(name)}.")
    if config.ramp > 1:
        raise RecipeError(f"ramp is a fraction of training, in [0, 1]; got {config.ramp}.")
    if config.model not in models.list_models():
        raise RecipeError(f"unknown model {config.model!r}; known: {models.list_models()}.")
    if config.data not in data.NAMED_DATASETS:
        known = sorted(data.NAMED_DATASETS)
        raise RecipeError(f"unknown data set {config.data!r}; known: {known}.")
    unknown = [a for a in config.eval_attacks if a not in runs.EVAL_ATTACKS]
    if unknown:
        raise RecipeError(f"unknown eval_attacks {unknown}; known: {sorted(runs.EVAL_ATTACKS)}.")
    if "pgd" in config.eval_attacks or "pgd-cw" in config.eval_attacks:
        reach = config.eval_step_size * config.eval_steps
        if config.eval_step_size > 0 and reach < config.eps:
            raise RecipeError(
                f"the evaluation's PGD moves at most eval_steps x eval_step_size = {reach:g}, "
                f"less than eps {config.eps:g}; raise eval_steps, or set eval_step_size=0 "
                "(2.5 eps / steps)."
            )


def _types(config_type) -> dict[str, Any]:
    return {f.name: str(f.type) for f in dataclasses.fields(config_type)}
