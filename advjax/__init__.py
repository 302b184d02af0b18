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

from advjax import attacks, data, eval, losses, models, train
from advjax.attacks import (
    Attack,
    LogitsFn,
    ThreatModel,
    fgm,
    fgsm,
    over_epsilons,
    pgd,
    with_restarts,
)
from advjax.runs import LoadedRun, RunError, load_run, save_run_model

__version__ = "0.1.0"

__all__ = [
    "Attack",
    "LoadedRun",
    "LogitsFn",
    "RunError",
    "ThreatModel",
    "attacks",
    "data",
    "eval",
    "fgm",
    "fgsm",
    "load_run",
    "losses",
    "models",
    "over_epsilons",
    "pgd",
    "save_run_model",
    "train",
    "with_restarts",
]
