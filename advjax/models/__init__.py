"""Flax model zoo (NHWC inputs in [0, 1] -> logits), and NNX / Equinox models wrapped for training.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from advjax import models
  >>> model = models.get_model("fast_mnist")
  >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
  >>> models.eval_logits_fn(model, variables)(jnp.zeros((2, 28, 28, 1))).shape
  (2, 10)
"""

from advjax.models._common import flatten, normalize
from advjax.models._equinox import EquinoxModel
from advjax.models._ibp_nets import IBPLarge, IBPMedium, IBPSmall
from advjax.models._logits import eval_logits_fn, init_model, param_count, train_apply
from advjax.models._mnist_nets import MLP, FastMNISTNet, MadryCNN, SmallCNN
from advjax.models._nnx import NNXModel
from advjax.models._precision import mixed_precision
from advjax.models._registry import get_model, list_models
from advjax.models._resnet import PreActBlock, PreActResNet18, WideResNet
from advjax.models._torch_init import torch_default_init

__all__ = [
    "MLP",
    "EquinoxModel",
    "FastMNISTNet",
    "IBPLarge",
    "IBPMedium",
    "IBPSmall",
    "MadryCNN",
    "NNXModel",
    "PreActBlock",
    "PreActResNet18",
    "SmallCNN",
    "WideResNet",
    "eval_logits_fn",
    "flatten",
    "get_model",
    "init_model",
    "list_models",
    "mixed_precision",
    "normalize",
    "param_count",
    "torch_default_init",
    "train_apply",
]
