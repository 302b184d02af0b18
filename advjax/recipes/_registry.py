"""The registry of named training recipes."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

from advjax.recipes._config import RecipeConfig, RecipeError


@dataclasses.dataclass(frozen=True)
class Stage:
    """One call of :func:`advjax.train.fit` in a recipe.

    Attributes:
      name: the stage's name (its checkpoints go to ``checkpoints/<name>``).
      objective: ``(config, context) -> objective``; ``context`` has
        ``total_steps``, ``steps_per_epoch`` and ``previous`` (the previous
        stage's trained state, e.g. distillation's teacher, or ``None``).
      replays: ``config -> m``, the step's ``replays`` (free AT's ``m``).
      early_stopping: ``config -> max drop or None``: stop when the monitored PGD
        accuracy drops by more than this fraction (FGSM-RS's catastrophic
        overfitting).
      keep_best: deploy the epoch with the best monitored PGD accuracy.
      carry: the objective carries a perturbation across steps in
        ``state.carry`` (free adversarial training).
      switch: ``(config, context) -> (step, objective) or None``: from that step
        on, train with that objective (CROWN-IBP once beta reaches 0).

    Example:
      >>> from advjax import train
      >>> from advjax.recipes import Stage
      >>> stage = Stage("train", lambda config, context: train.standard())
      >>> stage.replays(None), stage.early_stopping(None), stage.keep_best
      (1, None, False)
    """

    name: str
    objective: Callable
    replays: Callable[[RecipeConfig], int] = lambda config: 1
    early_stopping: Callable[[RecipeConfig], float | None] = lambda config: None
    keep_best: bool = False
    carry: bool = False
    switch: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named training recipe: its configuration type, its stages and what it is evaluated with.

    Attributes:
      name: the name ``advjax train`` takes.
      description: one line for ``advjax list``.
      paper: the paper (authors, year, arXiv id) and its published settings.
      config: the :class:`RecipeConfig` subclass holding its defaults.
      stages: the training stages, run in order.
      certify: certification methods run after training (``"ibp"``, ``"smoothing"``, ...).
      norms: the threat models (``config.norm``) its training objective implements;
        another is refused before anything is written.

    Example:
      >>> from advjax.recipes import get_recipe
      >>> recipe = get_recipe("crown_ibp")
      >>> recipe.config.__name__, [s.name for s in recipe.stages], recipe.certify
      ('CROWNIBPConfig', ['train'], ('ibp', 'crown-ibp'))
    """

    name: str
    description: str
    paper: str
    config: type
    stages: tuple[Stage, ...]
    certify: tuple[str, ...] = ()
    norms: tuple[str, ...] = ("linf",)


RECIPES: dict[str, Recipe] = {}
"""Every registered recipe by name (:func:`register` adds to it)."""


def register(recipe: Recipe) -> Recipe:
    """Adds ``recipe`` to :data:`RECIPES` under its name.

    Args:
      recipe: the recipe.

    Returns:
      The recipe.

    Raises:
      RecipeError: a recipe of that name exists.

    Example:
      >>> from advjax.recipes import RECIPES, register
      >>> try:
      ...     register(RECIPES["trades"])
      ... except ValueError as error:
      ...     print(error)
      recipe 'trades' is already registered.
    """
    if recipe.name in RECIPES:
        raise RecipeError(f"recipe {recipe.name!r} is already registered.")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Args:
      name: a key of :data:`RECIPES` (``advjax list`` shows them).

    Returns:
      The :class:`Recipe`.

    Raises:
      RecipeError: no such recipe (the message suggests close names).

    Example:
      >>> from advjax.recipes import get_recipe
      >>> get_recipe("trades").config().beta
      6.0
    """
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=3)
        hint = f"did you mean {close}? " if close else ""
        raise RecipeError(f"unknown recipe {name!r}; {hint}known: {sorted(RECIPES)}.")
    return RECIPES[name]
