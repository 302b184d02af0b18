"""CIFAR-10 recipes with their papers' settings: fast AT, PGD-AT and TRADES.

Their defaults are the published GPU settings on the full training set
(``data=cifar10-jpeg``: the 60,000 images re-encoded as JPEG-75, see
``docs/training.md`` for what that changes); ``--set`` shrinks them to a CPU
(``model=``, ``train_size=``, ``epochs=``).
"""

from __future__ import annotations

import dataclasses

from advjax import train
from advjax.recipes._adversarial import (
    FGSM_RS_STAGE,
    TRADES,
    FGSMRSConfig,
    PGDATConfig,
    TRADESConfig,
    _beta_objective,
    _pgd_at,
)
from advjax.recipes._config import RecipeConfig
from advjax.recipes._registry import Recipe, Stage, register

CIFAR_EPS = 8 / 255
"""The standard Linf budget on CIFAR-10, in [0, 1] pixel units."""


@dataclasses.dataclass
class CIFARSettings(RecipeConfig):
    """What the CIFAR-10 papers share: the data, SGD with weight decay, 8/255, crops and flips.

    Mixed in before a recipe's own configuration, so these defaults win over its MNIST ones;
    evaluation: PGD-50 x 10 restarts (step 2/255) and AutoAttack on the 10,000 test images.
    """

    model: str = "preact_resnet18"
    init: str = "torch"
    data: str = "cifar10-jpeg"
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eps: float = CIFAR_EPS
    ramp: float = 0.0
    augment: str = "crop_flip"
    monitor_examples: int = 1000
    eval_attacks: list[str] = dataclasses.field(default_factory=lambda: ["pgd", "autoattack"])
    eval_examples: int = 10000
    eval_steps: int = 50
    eval_restarts: int = 10
    eval_step_size: float = 2 / 255


@dataclasses.dataclass
class FastATCIFARConfig(CIFARSettings, FGSMRSConfig):
    """Fast adversarial training on CIFAR-10 (Wong, Rice & Kolter 2020): FGSM-RS, alpha 10/255."""

    epochs: int = 15
    lr: float = 0.2
    lr_schedule: str = "triangular"
    alpha: float = 10 / 255
    clip_start: bool = True
    precision: str = "bf16"


@dataclasses.dataclass
class PGDATCIFARConfig(CIFARSettings, PGDATConfig):
    """PGD-10 adversarial training on CIFAR-10, best epoch deployed (Rice et al. 2020)."""

    epochs: int = 200
    lr: float = 0.1
    lr_schedule: str = "piecewise"
    lr_milestones: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.75])
    train_steps: int = 10
    train_step_size: float = 2 / 255


@dataclasses.dataclass
class TRADESCIFARConfig(CIFARSettings, TRADESConfig):
    """TRADES on CIFAR-10 (Zhang et al. 2019): WRN-34-10, beta 6, KL-PGD-10 step 0.007.

    Evaluated as in the TRADES code: PGD-20, step 0.003, at eps 0.031.
    """

    model: str = "wide_resnet_34_10"
    epochs: int = 76
    lr: float = 0.1
    lr_schedule: str = "piecewise"
    lr_milestones: list[float] = dataclasses.field(default_factory=lambda: [75 / 76])
    weight_decay: float = 2e-4
    eps: float = 0.031
    train_steps: int = 10
    train_step_size: float = 0.007
    beta: float = 6.0
    eval_steps: int = 20
    eval_restarts: int = 1
    eval_step_size: float = 0.003


for recipe in (
    Recipe(
        "fast_at_cifar10",
        "fast AT on CIFAR-10: FGSM-RS, PreAct ResNet-18, cyclic lr, 15 epochs, bf16",
        "Wong, Rice & Kolter 2020, arXiv:2001.03994; PreAct ResNet-18, eps 8/255, alpha "
        "10/255, 15 epochs, cyclic lr to 0.2, mixed precision: 83.81% clean, 46.06% PGD-50x10 "
        "(about 12 minutes on their GPU)",
        FastATCIFARConfig,
        (FGSM_RS_STAGE,),
    ),
    Recipe(
        "pgd_at_cifar10",
        "PGD-10 AT on CIFAR-10, PreAct ResNet-18, 200 epochs, best epoch deployed",
        "Rice, Wong & Kolter 2020, arXiv:2002.11569 (after Madry et al. 2018, "
        "arXiv:1706.06083); PreAct ResNet-18, PGD-10 step 2/255 at 8/255: best checkpoint "
        "about 52% PGD robust, final about 44% (robust overfitting)",
        PGDATCIFARConfig,
        (Stage("train", _pgd_at, keep_best=True),),
    ),
    Recipe(
        "trades_cifar10",
        "TRADES on CIFAR-10, WRN-34-10, beta 6",
        f"{TRADES}; WRN-34-10, KL-PGD-10 step 0.007 at eps 0.031, beta 6, SGD 0.1, 76 epochs "
        "(decay at 75): 84.92% clean, 56.61% PGD-20",
        TRADESCIFARConfig,
        (Stage("train", _beta_objective(train.trades)),),
    ),
):
    register(recipe)
