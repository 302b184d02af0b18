"""Certified-training recipes: IBP, CROWN-IBP, and Gaussian-noise training for smoothing.

Defaults are the MNIST settings measured in ``docs/certification.md``: Adam
1e-3 decayed 10x at 60% and 80% of training, batch 100, a clean warm-up, then
a ramp of the training budget and of kappa.
"""

from __future__ import annotations

import dataclasses

from advjax import train
from advjax.recipes._config import RecipeConfig
from advjax.recipes._registry import Recipe, Stage, register


@dataclasses.dataclass
class IBPConfig(RecipeConfig):
    """IBP training (``eps`` is the test budget; training uses ``train_eps``).

    Attributes:
      train_eps: the training budget (0: 1.1 x ``eps``, the paper's minimum; the
        paper's MNIST settings: 0.2 for a test budget of 0.1, 0.4 for 0.3).
      warmup: clean epochs before the ramp.
      ramp_epochs: epochs of the ramp of the budget and of kappa.
      kappa_start: kappa (the clean loss's weight) during warm-up.
      kappa_end: kappa at the end of the ramp.
      ramp_shape: ``"linear"`` or ``"smooth"``.
      lr_milestones: fractions of training where the learning rate drops 10x.
    """

    model: str = "ibp_small"
    eps: float = 0.1
    train_eps: float = 0.2
    epochs: int = 100
    warmup: float = 4.0
    ramp_epochs: float = 40.0
    kappa_start: float = 1.0
    kappa_end: float = 0.5
    ramp_shape: str = "linear"
    lr: float = 1e-3
    lr_schedule: str = "piecewise"
    lr_milestones: list[float] = dataclasses.field(default_factory=lambda: [0.6, 0.8])
    ramp: float = 0.0
    eval_attacks: list[str] = dataclasses.field(default_factory=lambda: ["pgd"])
    eval_steps: int = 100
    eval_step_size: float = 0.0
    certify_examples: int = 1000


@dataclasses.dataclass
class CROWNIBPConfig(IBPConfig):
    """CROWN-IBP training; beta (the paper's CROWN-IBP weight) ramps 1 -> 0 with the budget."""

    eps: float = 0.3
    train_eps: float = 0.4
    beta_start: float = 1.0
    beta_end: float = 0.0


@dataclasses.dataclass
class GaussianNoiseConfig(RecipeConfig):
    """Gaussian data augmentation for randomized smoothing.

    Attributes:
      sigma: the noise's standard deviation, in input units (training and certification).
      radii: the L2 radii at which certified accuracy is reported.
      certify_examples: test examples certified (one CERTIFY call each).
      smoothing_samples: Monte Carlo samples per example (Cohen et al.'s ``n``).
      smoothing_alpha: the certificate's failure probability.
    """

    sigma: float = 0.25
    epochs: int = 10
    lr: float = 1e-3
    lr_schedule: str = "piecewise"
    lr_milestones: list[float] = dataclasses.field(default_factory=lambda: [0.6, 0.8])
    ramp: float = 0.0
    eps: float = 0.25
    norm: str = "l2"
    monitor_examples: int = 0
    eval_attacks: list[str] = dataclasses.field(default_factory=list)
    radii: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    certify_examples: int = 100
    smoothing_samples: int = 1000
    smoothing_alpha: float = 0.001


def _ramps(config, context):
    warmup = int(config.warmup * context.steps_per_epoch)
    ramp = int(config.ramp_epochs * context.steps_per_epoch)
    return warmup, ramp


def _train_eps(config) -> float:
    return config.train_eps or 1.1 * config.eps


def _eps_and_kappa(config, context):
    """The schedules of the training budget and of kappa: warm-up, then the ramp."""
    warmup, ramp = _ramps(config, context)
    return train.ibp_schedules(
        _train_eps(config),
        warmup_steps=warmup,
        ramp_steps=ramp,
        kappa_start=config.kappa_start,
        kappa_end=config.kappa_end,
        shape=config.ramp_shape,
    )


def _ibp(config, context):
    eps, kappa = _eps_and_kappa(config, context)
    return train.ibp_training(eps, kappa=kappa)


def _crown_ibp(config, context):
    warmup, ramp = _ramps(config, context)
    beta = train.epsilon_ramp(
        config.beta_end, ramp, initial=config.beta_start, start_step=warmup, kind=config.ramp_shape
    )
    eps, kappa = _eps_and_kappa(config, context)
    return train.crown_ibp_training(eps, kappa=kappa, beta=beta)


def _after_crown_ramp(config, context):
    """Once beta reaches 0 the loss is IBP's: train on without the CROWN pass."""
    if config.beta_end != 0.0:
        return None
    warmup, ramp = _ramps(config, context)
    return warmup + ramp, _ibp(config, context)


for recipe in (
    Recipe(
        "ibp",
        "interval bound propagation training (certified Linf robustness)",
        "Gowal et al. 2018, arXiv:1810.12715; MNIST: train eps 0.2 for test 0.1, 0.4 for 0.3, "
        "kappa 1 -> 0.5",
        IBPConfig,
        (Stage("train", _ibp),),
        certify=("ibp",),
    ),
    Recipe(
        "crown_ibp",
        "CROWN-IBP training: beta CROWN-IBP + (1 - beta) IBP bounds, beta 1 -> 0",
        "Zhang et al. 2020, arXiv:1906.06316; MNIST: kappa 0, beta 1 -> 0",
        CROWNIBPConfig,
        (Stage("train", _crown_ibp, switch=_after_crown_ramp),),
        certify=("ibp", "crown-ibp"),
    ),
    Recipe(
        "gaussian_noise",
        "Gaussian-noise training for randomized smoothing, certified by CERTIFY (L2)",
        "Cohen, Rosenfeld & Kolter 2019, arXiv:1902.02918",
        GaussianNoiseConfig,
        (Stage("train", lambda config, context: train.gaussian_noise_training(config.sigma)),),
        certify=("smoothing",),
        norms=("linf", "l2"),
    ),
):
    register(recipe)
