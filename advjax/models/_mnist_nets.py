"""Small MNIST-scale networks from the adversarial-robustness literature.

All models take NHWC float inputs in ``[0, 1]`` and return logits ``[B, K]``.
They use only dense / conv / ReLU / max-pool / reshape (and dropout in train
mode), so interval-bound propagation over the jaxpr handles them.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from advjax.models._common import flatten


class MLP(nn.Module):
    """Fully connected ReLU network.

    Spec: flatten -> ``[dense(h) -> ReLU for h in hidden]`` -> dense(num_classes).
    The default ``hidden=(100,)`` is the "tiny" model of Gowal et al. (2018),
    "On the Effectiveness of Interval Bound Propagation for Training Verifiably
    Robust Models" (arXiv:1810.12715).

    Attributes:
      hidden: Widths of the hidden layers (may be empty: a linear model).
      num_classes: Number of output logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(hidden=(32, 16), num_classes=10)
      >>> x = jnp.zeros((2, 28, 28, 1))
      >>> variables = model.init(jax.random.key(0), x)
      >>> model.apply(variables, x).shape
      (2, 10)
    """

    hidden: Sequence[int] = (100,)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        x = flatten(x)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class MadryCNN(nn.Module):
    """The MNIST-challenge CNN of Madry et al. (2018).

    "Towards Deep Learning Models Resistant to Adversarial Attacks"
    (arXiv:1706.06083), model of the MadryLab ``mnist_challenge`` repository:

    * conv 5x5, 32 filters, stride 1, SAME padding, + ReLU
    * max-pool 2x2, stride 2 (SAME, as in the TensorFlow reference)
    * conv 5x5, 64 filters, stride 1, SAME padding, + ReLU
    * max-pool 2x2, stride 2
    * flatten (NHWC order, as in the TF reference) -> dense 1024 + ReLU
    * dense ``num_classes``

    With 28x28x1 inputs and 10 classes it has 3,274,634 parameters.

    Attributes:
      num_classes: Number of output logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = MadryCNN()
      >>> x = jnp.zeros((1, 28, 28, 1))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> param_count(shapes)
      3274634
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        x = nn.relu(nn.Conv(32, (5, 5), padding="SAME", name="conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = nn.relu(nn.Conv(64, (5, 5), padding="SAME", name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = nn.relu(nn.Dense(1024, name="fc1")(flatten(x)))
        return nn.Dense(self.num_classes, name="fc2")(x)


class FastMNISTNet(nn.Module):
    """MNIST network of Wong, Rice & Kolter (2020), "Fast is better than free".

    "Fast is better than free: Revisiting adversarial training"
    (arXiv:2001.03994), ``locuslab/fast_adversarial`` MNIST model:

    * conv 4x4, 16 filters, stride 2, padding ((1, 1), (1, 1)), + ReLU  (28 -> 14)
    * conv 4x4, 32 filters, stride 2, padding ((1, 1), (1, 1)), + ReLU  (14 -> 7)
    * flatten -> dense 100 + ReLU
    * dense ``num_classes``

    The PyTorch reference flattens in CHW order; this model flattens NHWC. The
    architecture (and parameter count, 166,406 for 10 classes) is identical; only
    the row order of the first dense kernel differs when porting weights.

    Attributes:
      num_classes: Number of output logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import init_model, param_count
      >>> model = FastMNISTNet()
      >>> variables = init_model(model, jax.random.key(0), (28, 28, 1))
      >>> model.apply(variables, jnp.zeros((1, 28, 28, 1))).shape, param_count(variables)
      ((1, 10), 166406)
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        pad = ((1, 1), (1, 1))
        x = nn.relu(nn.Conv(16, (4, 4), strides=(2, 2), padding=pad, name="conv1")(x))
        x = nn.relu(nn.Conv(32, (4, 4), strides=(2, 2), padding=pad, name="conv2")(x))
        x = nn.relu(nn.Dense(100, name="fc1")(flatten(x)))
        return nn.Dense(self.num_classes, name="fc2")(x)


class SmallCNN(nn.Module):
    """The MNIST ``SmallCNN`` of TRADES (Zhang et al., 2019).

    "Theoretically Principled Trade-off between Robustness and Accuracy"
    (arXiv:1901.08573), ``yaodongyu/TRADES`` ``models/small_cnn.py``. All convs
    are 3x3, stride 1, VALID padding, each followed by ReLU:

    * conv 32 (28 -> 26), conv 32 (-> 24), max-pool 2x2/2 (-> 12)
    * conv 64 (-> 10), conv 64 (-> 8), max-pool 2x2/2 (-> 4)
    * flatten (4*4*64 = 1024) -> dense 200 + ReLU -> dropout(``dropout_rate``)
    * dense 200 + ReLU
    * dense ``num_classes``

    As in the reference, a single dropout layer (p = 0.5) sits after the first
    dense layer. Dropout is only active with ``train=True``, which then needs a
    ``'dropout'`` rng. 312,202 parameters for 10 classes.

    Attributes:
      num_classes: Number of output logits.
      dropout_rate: Dropout probability after the first dense layer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = SmallCNN()
      >>> x = jnp.zeros((1, 28, 28, 1))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> param_count(shapes)
      312202
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
      >>> variables = jax.tree.map(jnp.zeros_like, shapes)  # train mode needs a dropout rng
      >>> model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)}).shape
      (1, 10)
    """

    num_classes: int = 10
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]``; dropout only when ``train``."""
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", name="conv1")(x))
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", name="conv3")(x))
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", name="conv4")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        x = nn.relu(nn.Dense(200, name="fc1")(flatten(x)))
        if train and self.dropout_rate > 0.0:
            x = nn.Dropout(self.dropout_rate, deterministic=False)(x)
        x = nn.relu(nn.Dense(200, name="fc2")(x))
        return nn.Dense(self.num_classes, name="fc3")(x)
