"""Paper recipes as data: named configurations trained into run directories.

``advjax train RECIPE`` and :func:`train_recipe` train any of :data:`RECIPES`
through :func:`advjax.train.fit` (checkpoints, exact resume, early stopping,
progress bar, clean and adversarial metrics apart), save the model as a run
(:mod:`advjax.runs`) and evaluate it. ``--set key=value`` overrides any field
of the recipe's configuration class (``get_recipe(name).config``).
"""

from advjax.recipes import _adversarial, _certified, _cifar  # noqa: F401  (registers the recipes)
from advjax.recipes._config import RecipeConfig, RecipeError, check_config, configure
from advjax.recipes._registry import RECIPES, Recipe, Stage, get_recipe, register
from advjax.recipes._train import (
    StageContext,
    TrainOutcome,
    initial_state,
    make_optimizer,
    monitor,
    recipe_certify_spec,
    recipe_eval_spec,
    train_recipe,
    training_data,
)

__all__ = [
    "RECIPES",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "Stage",
    "StageContext",
    "TrainOutcome",
    "check_config",
    "configure",
    "get_recipe",
    "initial_state",
    "make_optimizer",
    "monitor",
    "recipe_certify_spec",
    "recipe_eval_spec",
    "register",
    "train_recipe",
    "training_data",
]
