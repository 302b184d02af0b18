"""Adversarial-training recipes, and standard training as the baseline.

PGD-AT, TRADES, MART, FGSM-RS, free AT, AWP, the input-gradient penalty and
defensive distillation.

Defaults are the MNIST settings measured in ``docs/training.md`` (the embedded
5,000 training images, a 2-core CPU); each recipe's ``paper`` gives the
published settings, which ``--set`` restores.
"""

from __future__ import annotations

import dataclasses

from advjax import attacks, train
from advjax.recipes._config import RecipeConfig
from advjax.recipes._registry import Recipe, Stage, register


def training_epsilon(config, context):
    """The training budget: ``eps``, ramped from 0 over the first ``ramp`` of training."""
    ramp_steps = int(config.ramp * context.total_steps)
    return train.epsilon_ramp(config.eps, ramp_steps) if ramp_steps > 0 else config.eps


def _with_awp(config, objective, context):
    if config.awp_gamma <= 0.0:
        return objective
    warmup = config.awp_warmup * context.steps_per_epoch
    return train.awp(objective, gamma=config.awp_gamma, warmup_steps=warmup)


@dataclasses.dataclass
class StandardConfig(RecipeConfig):
    """Standard (non-robust) training: the baseline every robust model is compared with."""

    ramp: float = 0.0


@dataclasses.dataclass
class PGDATConfig(RecipeConfig):
    """PGD adversarial training.

    Attributes:
      train_steps: PGD steps of the inner attack.
      train_step_size: its step at the full budget (it scales with the ramped budget).
      awp_gamma: adversarial weight perturbation's relative size (0: off).
      awp_warmup: epochs before AWP starts.
    """

    train_steps: int = 10
    train_step_size: float = 0.05
    awp_gamma: float = 0.0
    awp_warmup: int = 0


@dataclasses.dataclass
class AWPConfig(PGDATConfig):
    """PGD-AT with adversarial weight perturbation at the reference gamma."""

    awp_gamma: float = 0.01


@dataclasses.dataclass
class TRADESConfig(PGDATConfig):
    """TRADES / MART: ``beta`` weighs the robustness (KL) term, as in the papers."""

    beta: float = 6.0


@dataclasses.dataclass
class TRADESAWPConfig(TRADESConfig):
    """TRADES with adversarial weight perturbation at the reference gamma."""

    awp_gamma: float = 0.005


@dataclasses.dataclass
class FGSMRSConfig(RecipeConfig):
    """FGSM with a random start ("fast" adversarial training).

    Attributes:
      alpha: the FGSM step (paper: 1.25 eps; 0.375 at eps 0.3 on MNIST).
      clip_start: clip the uniform start to the valid range (their CIFAR-10 code)
        or not (their MNIST code).
      max_drop: stop when the monitored PGD accuracy drops by more than this
        fraction (catastrophic overfitting); the best epoch is deployed.
    """

    init: str = "torch"
    epochs: int = 30
    alpha: float = 0.375
    clip_start: bool = False
    max_drop: float = 0.2


@dataclasses.dataclass
class FreeATConfig(RecipeConfig):
    """Free adversarial training.

    Attributes:
      replays: how often each minibatch is replayed (the paper's ``m``).
      free_step_size: the FGSM step on the carried perturbation (0: ``eps``, the paper's).
    """

    epochs: int = 2
    replays: int = 8
    free_step_size: float = 0.0
    ramp: float = 0.0


@dataclasses.dataclass
class InputGradientConfig(RecipeConfig):
    """Input-gradient regularisation (double backpropagation).

    Attributes:
      gradient_weight: the penalty's weight (the paper's lambda).
      gradient_norm: the penalty's norm of the input gradient, ``"l2"`` or ``"l1"``.
    """

    gradient_weight: float = 1.0
    gradient_norm: str = "l2"
    ramp: float = 0.0


@dataclasses.dataclass
class DistillationConfig(RecipeConfig):
    """Defensive distillation: a teacher and a student at ``temperature``, deployed at T = 1."""

    temperature: float = 100.0
    epochs: int = 10
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    init: str = "torch"
    ramp: float = 0.0
    eval_attacks: list[str] = dataclasses.field(default_factory=lambda: ["pgd", "pgd-cw"])


def _pgd_attack(config):
    ratio = config.train_step_size / config.eps

    def make_attack(eps):  # the step scales with the ramped budget
        return attacks.pgd(
            eps, steps=config.train_steps, step_size=ratio * eps, norm=config.norm, keep_best=False
        )

    return make_attack


def _pgd_at(config, context):
    objective = train.pgd_at(_pgd_attack(config), training_epsilon(config, context))
    return _with_awp(config, objective, context)


def _beta_objective(factory):
    def build(config, context):
        ratio = config.train_step_size / config.eps
        objective = factory(
            training_epsilon(config, context),
            beta=config.beta,
            steps=config.train_steps,
            step_size=lambda eps: ratio * eps,
        )
        return _with_awp(config, objective, context)

    return build


FGSM_RS_STAGE = Stage(
    "train",
    lambda config, context: train.fgsm_rs(
        training_epsilon(config, context),
        alpha=config.alpha,
        max_epsilon=config.eps,
        clip_start=config.clip_start,
    ),
    early_stopping=lambda config: config.max_drop,
    keep_best=True,
)
"""FGSM-RS's one stage: stopped on catastrophic overfitting, the best epoch deployed."""


def _distillation_student(config, context):
    return train.distillation(config.temperature, teacher=train.eval_logits(context.previous))


MADRY = "Madry et al. 2018, arXiv:1706.06083"
TRADES = "Zhang et al. 2019, arXiv:1901.08573"
AWP = "Wu, Xia & Wang 2020, arXiv:2004.05884"

for recipe in (
    Recipe(
        "standard",
        "standard training on clean images (the undefended baseline)",
        "empirical risk minimisation",
        StandardConfig,
        (Stage("train", lambda config, context: train.standard()),),
        norms=("linf", "l2"),
    ),
    Recipe(
        "pgd_at",
        "PGD adversarial training: train on PGD examples at eps",
        f"{MADRY}; MNIST: PGD-40 step 0.01 at eps 0.3, ~83 epochs of 60k, Adam 1e-4 "
        "(set train_steps=40 train_step_size=0.01)",
        PGDATConfig,
        (Stage("train", _pgd_at),),
        norms=("linf", "l2"),
    ),
    Recipe(
        "pgd_at_awp",
        "PGD-AT with adversarial weight perturbation (gamma 0.01)",
        f"{AWP}; {MADRY}",
        AWPConfig,
        (Stage("train", _pgd_at),),
        norms=("linf", "l2"),
    ),
    Recipe(
        "trades",
        "TRADES: CE(f(x), y) + beta KL(f(x) || f(x_adv)), KL-PGD inner attack",
        f"{TRADES}; MNIST: SmallCNN, KL-PGD-40 step 0.01, beta 6, SGD 0.01, 100 epochs",
        TRADESConfig,
        (Stage("train", _beta_objective(train.trades)),),
    ),
    Recipe(
        "trades_awp",
        "TRADES with adversarial weight perturbation (gamma 0.005)",
        f"{AWP}; {TRADES}",
        TRADESAWPConfig,
        (Stage("train", _beta_objective(train.trades)),),
    ),
    Recipe(
        "mart",
        "MART: boosted CE on adversarial examples + beta KL weighted by misclassification",
        "Wang et al. 2020 (ICLR, openreview rklOg6EFwS); MNIST: CE-PGD-40 step 0.01, beta 6",
        TRADESConfig,
        (Stage("train", _beta_objective(train.mart)),),
    ),
    Recipe(
        "fgsm_rs",
        "FGSM with a random start ('fast' AT), stopped on catastrophic overfitting",
        "Wong, Rice & Kolter 2020, arXiv:2001.03994; MNIST: alpha 0.375, 10 epochs of 60k, "
        "cyclic lr peaking at 5e-3",
        FGSMRSConfig,
        (FGSM_RS_STAGE,),
    ),
    Recipe(
        "free_at",
        "free adversarial training: each minibatch replayed m times, one backward pass each",
        "Shafahi et al. 2019, arXiv:1904.12843; CIFAR-10: m 8, step eps",
        FreeATConfig,
        (
            Stage(
                "train",
                lambda config, context: train.free_at(
                    config.eps, step_size=config.free_step_size or None
                ),
                replays=lambda config: config.replays,
                carry=True,
            ),
        ),
    ),
    Recipe(
        "input_gradient",
        "input-gradient regularisation: CE + lambda ||grad_x CE||",
        "Ross & Doshi-Velez 2018, arXiv:1711.09404",
        InputGradientConfig,
        (
            Stage(
                "train",
                lambda config, context: train.input_gradient_penalty(
                    config.gradient_weight, norm=config.gradient_norm
                ),
            ),
        ),
        norms=("linf", "l2"),
    ),
    Recipe(
        "distillation",
        "defensive distillation (teacher, then student at temperature T, deployed at T = 1)",
        "Papernot et al. 2016, arXiv:1511.04508; broken by Carlini & Wagner 2017, "
        "arXiv:1607.04311 (evaluate with pgd-cw)",
        DistillationConfig,
        (
            Stage("teacher", lambda config, context: train.distillation(config.temperature)),
            Stage("student", _distillation_student),
        ),
        norms=("linf", "l2"),
    ),
):
    register(recipe)
