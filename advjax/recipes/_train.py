"""Training a recipe into a run directory: data, model, optimizer, ``fit``, model, reports."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from advjax import attacks, data, models, runs, train
from advjax.recipes._config import RecipeError, configure
from advjax.recipes._registry import Recipe, Stage, get_recipe


@dataclasses.dataclass(frozen=True)
class StageContext:
    """What a stage's objective may depend on besides the configuration.

    Attributes:
      total_steps: the stage's training steps (epochs x steps per epoch).
      steps_per_epoch: steps per pass over the training data.
      previous: the previous stage's trained state (distillation's teacher), or ``None``.

    Example:
      >>> from advjax.recipes import StageContext, get_recipe
      >>> context = StageContext(total_steps=100, steps_per_epoch=50)
      >>> stage = get_recipe("ibp").stages[0]
      >>> objective = stage.objective(get_recipe("ibp").config(), context)
      >>> context.previous is None, callable(objective)
      (True, True)
    """

    total_steps: int
    steps_per_epoch: int
    previous: train.TrainState | None = None


@dataclasses.dataclass
class TrainOutcome:
    """What :func:`train_recipe` did.

    Attributes:
      run_dir: the run directory.
      config: the configuration trained with.
      finished: whether training ran to its end (``False`` after ``max_steps``).
      train_seconds: wall time of the training loops of this call.
      stopped: why a stage stopped early (:class:`advjax.train.EarlyStopping`), or ``None``.
      evaluations: the stored evaluation reports (:func:`advjax.runs.evaluate_run`).
      certifications: the stored certification reports (:func:`advjax.runs.certify_run`).
      worst_case: per budget, the robust accuracy over all evaluation attacks
        together (an example counts as robust only if no attack broke it).
      deployed: the epoch deployed when a stage keeps its best epoch
        (``{"stage", "epoch", "step", metric: value}``), else ``None``.

    Example:
      >>> from pathlib import Path
      >>> from advjax.recipes import TrainOutcome, get_recipe
      >>> outcome = TrainOutcome(Path("runs/x"), get_recipe("standard").config(), False, 0.0)
      >>> outcome.finished, outcome.evaluations
      (False, [])
    """

    run_dir: Path
    config: Any
    finished: bool
    train_seconds: float
    stopped: str | None = None
    evaluations: list[dict] = dataclasses.field(default_factory=list)
    certifications: list[dict] = dataclasses.field(default_factory=list)
    worst_case: dict[float, float] = dataclasses.field(default_factory=dict)
    deployed: dict | None = None


def training_data(config) -> data.Dataset:
    """The training set: the named data set, or a fixed random subset of ``train_size`` images.

    The subset is drawn with seed 0 whatever the run's seed (the 5k MNIST file
    is sorted by class), so runs of different seeds see the same images.

    Example:
      >>> from advjax.recipes import get_recipe, training_data
      >>> len(training_data(get_recipe("standard").config(train_size=300)))
      300
    """
    train_set = data.load_named(config.data, "train", config.data_dir)
    if 0 < config.train_size < len(train_set):
        order = np.random.default_rng(0).permutation(len(train_set))
        train_set = train_set.subset(np.sort(order[: config.train_size]))
    return train_set


def make_optimizer(config, total_steps: int) -> optax.GradientTransformation:
    """The configured optimizer and learning-rate schedule over ``total_steps`` steps.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.recipes import get_recipe, make_optimizer
      >>> tx = make_optimizer(get_recipe("standard").config(optimizer="sgd"), 100)
      >>> state = tx.init({"w": jnp.zeros(3)})
    """
    schedules = {
        "triangular": lambda: train.triangular_lr(config.lr, total_steps),
        "piecewise": lambda: train.piecewise_lr(
            config.lr, total_steps, milestones=tuple(config.lr_milestones)
        ),
        "cosine": lambda: train.cosine_lr(config.lr, total_steps),
        "constant": lambda: config.lr,
    }
    rate = schedules[config.lr_schedule]()
    if config.optimizer == "sgd":
        base = optax.sgd(rate, momentum=config.momentum or None)
    else:
        base = optax.adam(rate)
    if config.weight_decay > 0:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
    return base


def initial_state(config, train_set, tx, *, seed: int, carry: bool) -> train.TrainState:
    """A fresh :class:`advjax.train.TrainState` of ``config.model`` for ``train_set``.

    Example:
      >>> from advjax.recipes import get_recipe, initial_state, make_optimizer, training_data
      >>> config = get_recipe("free_at").config(model="mlp", train_size=100)
      >>> train_set = training_data(config)
      >>> state = initial_state(config, train_set, make_optimizer(config, 10), seed=0, carry=True)
      >>> state.carry["delta"].shape
      (100, 28, 28, 1)
    """
    model = models.get_model(config.model)
    key = jax.random.key(seed)
    variables = models.init_model(model, key, train_set.image_shape)
    params = variables["params"]
    if config.init == "torch":
        params = models.torch_default_init(params, key)
    apply_fn = models.mixed_precision(model.apply) if config.precision == "bf16" else model.apply
    state = train.TrainState.create(
        apply_fn=apply_fn, params=params, batch_stats=variables.get("batch_stats"), tx=tx
    )
    if carry:
        state = state.replace(
            carry=train.free_at_carry((config.batch_size, *train_set.image_shape))
        )
    return state


def monitor(config, train_set):
    """The per-epoch check: clean and PGD accuracy on ``monitor_examples`` training images.

    Example:
      >>> from advjax.recipes import get_recipe, monitor, training_data
      >>> config = get_recipe("standard").config(monitor_examples=0)
      >>> monitor(config, training_data(config)) is None
      True
    """
    if config.monitor_examples <= 0:
        return None
    pick = np.random.default_rng(1).permutation(len(train_set))[: config.monitor_examples]
    x = data.to_device(train_set.images[pick])
    y = np.asarray(train_set.labels[pick], np.int32)
    attack = attacks.pgd(
        config.eps, steps=config.monitor_steps, step_size=config.eps / 4, norm=config.norm
    )
    return train.robust_eval_fn(x, y, attack)


AUGMENTATIONS = {"none": None, "crop_flip": data.random_crop_flip}
"""``RecipeConfig.augment``'s choices: the on-device augmentation of each training batch."""


def _stage_step(stage: Stage, config, context: StageContext):
    objective = stage.objective(config, context)
    replays = stage.replays(config)
    switch = stage.switch(config, context) if stage.switch is not None else None
    augment = AUGMENTATIONS[config.augment]
    if switch is None:
        return train.make_step(objective, replays=replays, augment=augment)
    at_step, later = switch
    steps = {False: objective, True: later}
    return train.staged_step(
        lambda later_stage: train.make_step(steps[later_stage], replays=replays, augment=augment),
        lambda step: step >= at_step,
    )


def recipe_eval_spec(config, attack: str) -> runs.EvalSpec:
    """The evaluation a recipe runs with ``attack`` at the end of training.

    ``advjax eval RUN`` with the same settings reproduces it exactly; the
    command line prints that command after training.

    Example:
      >>> from advjax.recipes import get_recipe, recipe_eval_spec
      >>> spec = recipe_eval_spec(get_recipe("pgd_at").config(), "pgd")
      >>> spec.epsilons, spec.steps, spec.restarts, spec.step_size
      ((0.0, 0.3), 50, 10, 0.01)
    """
    with_restarts = attack in ("pgd", "pgd-cw")  # the others keep their papers' defaults
    return runs.EvalSpec(
        attack,
        (config.eps,),
        norm=config.norm,
        n=config.eval_examples,
        seed=config.seed,
        steps=config.eval_steps if with_restarts else None,
        restarts=config.eval_restarts if with_restarts else None,
        step_size=(config.eval_step_size or None) if with_restarts else None,
    )


def recipe_certify_spec(config, method: str) -> runs.CertifySpec:
    """The certification a recipe runs with ``method`` at the end of training.

    Example:
      >>> from advjax.recipes import get_recipe, recipe_certify_spec
      >>> recipe_certify_spec(get_recipe("ibp").config(), "ibp").epsilons
      (0.1,)
    """
    if method == "smoothing":
        return runs.CertifySpec(
            method,
            tuple(config.radii),
            n=config.certify_examples,
            seed=config.seed,
            sigma=config.sigma,
            samples=config.smoothing_samples,
            alpha=config.smoothing_alpha,
        )
    return runs.CertifySpec(
        method,
        (config.eps,),
        n=config.certify_examples,
        seed=config.seed,
        pgd_steps=config.eval_steps,
        pgd_restarts=config.eval_restarts,
        pgd_examples=min(config.eval_examples, config.certify_examples),
    )


def _resolve_config(recipe: Recipe, out: Path, overrides: Sequence[str], resume: bool):
    config_path = out / runs.CONFIG
    if not resume:
        if config_path.exists() or (out / runs.CHECKPOINTS).exists():
            raise RecipeError(
                f"{out} already holds a run; continue it with --resume, or train into another "
                "--out folder."
            )
        return configure(recipe.config, overrides)
    if not config_path.is_file():
        raise RecipeError(
            f"nothing to resume in {out}: it has no {runs.CONFIG}. Start the run without --resume."
        )
    stored = runs.read_config(out)
    stored_recipe = stored.get("recipe", {})
    if stored_recipe.get("name") != recipe.name:
        raise RecipeError(
            f"{out} is a run of recipe {stored_recipe.get('name')!r}, not {recipe.name!r}; "
            f"resume it with `advjax train {stored_recipe.get('name')} --out {out} --resume`."
        )
    if "model_digests" in stored:
        raise RecipeError(
            f"{out} has finished training; nothing to resume. Evaluate it with "
            f"`advjax eval {out}`, or train a new run in another --out folder."
        )
    config = configure(recipe.config, overrides, base=stored_recipe["config"])
    changed = sorted(
        k for k, v in dataclasses.asdict(config).items() if stored_recipe["config"].get(k) != v
    )
    if changed:
        raise RecipeError(
            f"--resume continues the stored configuration; --set changes {changed}. "
            "Drop those overrides, or start a new run in another --out folder."
        )
    return config


def train_recipe(
    name: str,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    evaluate: bool = True,
) -> TrainOutcome:
    """Trains recipe ``name`` into the run directory ``out``, then evaluates and certifies it.

    Writes ``config.json`` first (format 1: the recipe and its whole
    configuration), trains every stage with :func:`advjax.train.fit`
    (checkpoints in ``checkpoints/<stage>``, one JSON record per epoch in
    ``metrics.jsonl``), saves the deployed model in ``model/``, then runs the
    recipe's evaluations (:func:`recipe_eval_spec`) and certifications
    (:func:`recipe_certify_spec`) and stores them in the run.

    Args:
      name: a recipe of :data:`advjax.recipes.RECIPES`.
      out: the run directory.
      overrides: ``"key=value"`` settings (see the recipe's config class).
      resume: continue an interrupted run in ``out`` from its newest intact
        checkpoint; the stored configuration is used.
      progress: show progress bars.
      max_steps: stop once this many steps of a stage are done (a checkpoint is
        written; resume later with ``resume=True``).
      evaluate: run the evaluations and certifications after training.

    Returns:
      A :class:`TrainOutcome`.

    Raises:
      RecipeError: unknown recipe or key, ill-typed value, ``out`` already
        holding a run (without ``resume``) or holding another recipe's run.

    Example:
      >>> import tempfile
      >>> from advjax.recipes import train_recipe
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     outcome = train_recipe(
      ...         "standard", tmp, progress=False,
      ...         overrides=["epochs=1", "train_size=200", "model=mlp", "monitor_examples=0",
      ...                    "eval_attacks=[fgsm]", "eval_examples=50"])
      ...     names = sorted(p.name for p in outcome.run_dir.iterdir())
      >>> print(*names)
      checkpoints config.json eval index.md metrics.jsonl model training_curves.png
    """
    recipe = get_recipe(name)
    out = Path(out).absolute()
    if max_steps is not None and max_steps < 1:
        raise RecipeError(f"max_steps must be >= 1, got {max_steps}.")
    config = _resolve_config(recipe, out, overrides, resume)
    if config.norm not in recipe.norms:
        raise RecipeError(
            f"recipe {recipe.name!r} trains against {list(recipe.norms)} only, not "
            f"norm={config.norm!r}; pgd_at trains against linf or l2."
        )
    train_set = training_data(config)
    runs.write_config(
        out,
        {
            "model": runs.model_spec(config.model),
            "input_shape": list(train_set.image_shape),
            "num_classes": int(train_set.num_classes),
            "dataset": {
                "name": config.data,
                "data_dir": config.data_dir,
                "train_images": len(train_set),
            },
            "threat": {"norm": config.norm, "eps": config.eps},
            "recipe": {
                "name": recipe.name,
                "paper": recipe.paper,
                "config": dataclasses.asdict(config),
            },
            "seed": config.seed,
        },
    )
    steps_per_epoch = data.num_batches(len(train_set), config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    outcome = TrainOutcome(out, config, finished=False, train_seconds=0.0)
    previous = None
    for index, stage in enumerate(recipe.stages):
        context = StageContext(total_steps, steps_per_epoch, previous)
        state = initial_state(
            config,
            train_set,
            make_optimizer(config, total_steps),
            seed=config.seed + 10 * index,
            carry=stage.carry,
        )
        last = index == len(recipe.stages) - 1
        max_drop = stage.early_stopping(config)
        result = train.fit(
            state,
            train_set,
            _stage_step(stage, config, context),
            epochs=config.epochs,
            batch_size=config.batch_size,
            key=jax.random.key(config.seed + 1 + 10 * index),
            eval_fn=monitor(config, train_set),
            checkpoint_dir=out / runs.CHECKPOINTS / stage.name,
            checkpoint_every=config.checkpoint_every or None,
            metrics_path=out / (runs.METRICS if last else f"metrics_{stage.name}.jsonl"),
            progress=progress,
            max_steps=max_steps,
            early_stopping=(
                train.EarlyStopping("eval/adv_acc", max_drop=max_drop)
                if max_drop is not None and config.monitor_examples > 0
                else None
            ),
            keep_best_state=stage.keep_best,
        )
        outcome.train_seconds += result.train_seconds
        outcome.stopped = outcome.stopped or result.stopped
        if result.stopped is None and len(result.history) < config.epochs:
            return outcome  # stopped at max_steps: resume later
        if stage.keep_best and result.best_state is not None:
            outcome.deployed = {"stage": stage.name, **result.best}
            previous = result.best_state
        else:
            previous = result.state
    outcome.finished = True
    runs.save_run_model(
        out,
        previous.variables(),
        model_name=config.model,
        input_shape=train_set.image_shape,
        extra={
            "trained": {
                "seconds": round(outcome.train_seconds, 1),
                "stopped": outcome.stopped,
                "deployed": outcome.deployed,
            }
        },
    )
    if evaluate:
        _evaluate(recipe, config, out, outcome, progress)
    runs.render_run(out)
    return outcome


def _evaluate(recipe: Recipe, config, out: Path, outcome: TrainOutcome, progress: bool) -> None:
    run = runs.load_run(out)
    robust = None
    for attack in config.eval_attacks:
        report = runs.evaluate_run(run, recipe_eval_spec(config, attack), progress=progress)
        outcome.evaluations.append(report)
        masks = runs.read_masks(report)
        robust = masks["robust"] if robust is None else robust & masks["robust"]
    if robust is not None:
        epsilons = outcome.evaluations[0]["report"]["epsilons"]
        outcome.worst_case = {
            float(e): float(r.mean()) for e, r in zip(epsilons, robust, strict=True)
        }
        (out / "eval" / "worst_case.json").write_text(
            json.dumps(
                {
                    "attacks": list(config.eval_attacks),
                    "epsilons": epsilons,
                    "robust_accuracy": [float(r.mean()) for r in robust],
                },
                indent=2,
            )
            + "\n"
        )
    for method in recipe.certify:
        spec = recipe_certify_spec(config, method)
        outcome.certifications.append(runs.certify_run(run, spec, progress=progress))
