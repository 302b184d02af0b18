"""advjax: JAX-native adversarial robustness.

Attacks, robust training and certification as composable JAX transforms.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import advjax
  >>> logits_fn = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], axis=-1)
  >>> x_adv = advjax.pgd(eps=0.1, steps=5)(logits_fn, jnp.full((1, 3), 0.5), jnp.array([0]),
  ...                                       key=jax.random.key(0))
  >>> bool(jnp.all(jnp.abs(x_adv - 0.5) <= 0.1 + 1e-6))
  True
"""

from advjax import (
    attacks,
    backend,
    certify,
    data,
    defenses,
    evaluation,
    losses,
    models,
    parallel,
    train,
)
from advjax.attacks import (
    Attack,
    LogitsFn,
    ThreatModel,
    apgd,
    apgd_t,
    bim,
    bpda,
    cw_l2,
    ddn,
    deepfool,
    early_stop,
    eot,
    eot_logits,
    fab,
    fgm,
    fgsm,
    hopskipjump,
    jsma,
    mifgsm,
    one_pixel,
    over_epsilons,
    pgd,
    square,
    targeted,
    universal_perturbation,
    with_restarts,
    worst_case,
)
from advjax.certify import (
    certified_accuracy,
    crown_bounds,
    crown_ibp_bounds,
    interval_bounds,
    smooth_certify,
)
from advjax.defenses import calibrate, ensemble, evaluate_defense, guard, preprocess
from advjax.evaluation import autoattack, evaluate
from advjax.runs import LoadedRun, RunError, load_run, save_run_model
from advjax.train import (
    certified_training,
    crown_ibp_training,
    distillation,
    fgsm_rs,
    free_at,
    gaussian_noise_training,
    ibp_training,
    input_gradient_penalty,
    mart,
    pgd_at,
    trades,
)

__version__ = "0.1.0"

__all__ = [
    "Attack",
    "LoadedRun",
    "LogitsFn",
    "RunError",
    "ThreatModel",
    "apgd",
    "apgd_t",
    "attacks",
    "backend",
    "autoattack",
    "bim",
    "bpda",
    "calibrate",
    "certified_accuracy",
    "certified_training",
    "certify",
    "crown_bounds",
    "crown_ibp_bounds",
    "crown_ibp_training",
    "cw_l2",
    "data",
    "ddn",
    "deepfool",
    "defenses",
    "distillation",
    "early_stop",
    "ensemble",
    "eot",
    "eot_logits",
    "evaluation",
    "evaluate",
    "evaluate_defense",
    "fab",
    "fgm",
    "fgsm",
    "fgsm_rs",
    "free_at",
    "gaussian_noise_training",
    "guard",
    "hopskipjump",
    "ibp_training",
    "input_gradient_penalty",
    "interval_bounds",
    "jsma",
    "load_run",
    "losses",
    "mart",
    "mifgsm",
    "models",
    "one_pixel",
    "over_epsilons",
    "parallel",
    "pgd",
    "pgd_at",
    "preprocess",
    "save_run_model",
    "smooth_certify",
    "square",
    "targeted",
    "trades",
    "train",
    "universal_perturbation",
    "with_restarts",
    "worst_case",
]
