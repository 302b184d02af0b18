"""The small / medium / large CNNs of Gowal et al. (2018) for IBP training.

Gowal, Dvijotham, Stanforth, Bunel, Qin, Uesato, Arandjelovic, Mann, Kohli,
"On the Effectiveness of Interval Bound Propagation for Training Verifiably
Robust Models" (arXiv:1810.12715), Table 1; kernel sizes, strides and padding
as in ``deepmind/interval-bound-propagation`` ``examples/train.py``.
Every conv / dense layer has a bias and is followed by ReLU except the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from advjax.models._common import flatten, normalize

# (features, kernel, stride, padding) per conv layer.
_ConvSpec = tuple[int, int, int, str]


def _conv_dense_stack(
    x: jax.Array,
    convs: Sequence[_ConvSpec],
    denses: Sequence[int],
    num_classes: int,
) -> jax.Array:
    """Applies ``conv+ReLU`` layers, flatten, ``dense+ReLU`` layers, final dense.

    Must be called from inside a ``@nn.compact`` method.
    """
    for i, (features, k, s, pad) in enumerate(convs):
        conv = nn.Conv(features, (k, k), strides=(s, s), padding=pad, name=f"conv{i + 1}")
        x = nn.relu(conv(x))
    x = flatten(x)
    for i, width in enumerate(denses):
        x = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
    return nn.Dense(num_classes, name=f"fc{len(denses) + 1}")(x)


class IBPSmall(nn.Module):
    """IBP "small" CNN (Gowal et al., 2018).

    Spec (VALID padding, ReLU after every hidden layer):

    * conv 4x4, 16 filters, stride 2
    * conv 4x4, 32 filters, stride 1
    * flatten -> dense 100
    * dense ``num_classes``

    On 28x28x1 inputs: 28 -> 13 -> 10, so 10*10*32 = 3200 features and 329,606
    parameters for 10 classes.

    Attributes:
      num_classes: Number of output logits.
      mean: Optional per-channel input mean (e.g. for CIFAR-10); ``None`` = none.
      std: Optional per-channel input std; ``None`` = none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = IBPSmall()
      >>> x = jnp.zeros((1, 28, 28, 1))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> param_count(shapes)
      329606
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
    """

    num_classes: int = 10
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        x = normalize(x, self.mean, self.std)
        convs = ((16, 4, 2, "VALID"), (32, 4, 1, "VALID"))
        return _conv_dense_stack(x, convs, (100,), self.num_classes)


class IBPMedium(nn.Module):
    """IBP "medium" CNN (Gowal et al., 2018).

    Spec (VALID padding, ReLU after every hidden layer):

    * conv 3x3, 32 filters, stride 1
    * conv 4x4, 32 filters, stride 2
    * conv 3x3, 64 filters, stride 1
    * conv 4x4, 64 filters, stride 2
    * flatten -> dense 512 -> dense 512
    * dense ``num_classes``

    On 28x28x1 inputs: 28 -> 26 -> 12 -> 10 -> 4 (1024 features).

    Attributes:
      num_classes: Number of output logits.
      mean: Optional per-channel input mean; ``None`` = none.
      std: Optional per-channel input std; ``None`` = none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = IBPMedium()
      >>> x = jnp.zeros((1, 28, 28, 1))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> param_count(shapes)
      893418
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
    """

    num_classes: int = 10
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        x = normalize(x, self.mean, self.std)
        convs = ((32, 3, 1, "VALID"), (32, 4, 2, "VALID"), (64, 3, 1, "VALID"), (64, 4, 2, "VALID"))
        return _conv_dense_stack(x, convs, (512, 512), self.num_classes)


class IBPLarge(nn.Module):
    """IBP "large" CNN (Gowal et al., 2018).

    Spec (SAME padding, as in the TensorFlow reference; ReLU after every
    hidden layer):

    * conv 3x3, 64 filters, stride 1
    * conv 3x3, 64 filters, stride 1
    * conv 3x3, 128 filters, stride 2
    * conv 3x3, 128 filters, stride 1
    * conv 3x3, 128 filters, stride 1
    * flatten -> dense ``hidden`` (512 as in the paper's Table 1)
    * dense ``num_classes``

    The released ``examples/train.py`` uses a 200-unit dense layer instead;
    pass ``hidden=200`` to reproduce that variant. On 28x28x1 inputs the conv
    stack yields 14x14x128 features; on 32x32x3, 16x16x128.

    Attributes:
      num_classes: Number of output logits.
      hidden: Width of the hidden dense layer.
      mean: Optional per-channel input mean; ``None`` = none.
      std: Optional per-channel input std; ``None`` = none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = IBPLarge()
      >>> x = jnp.zeros((1, 28, 28, 1))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> param_count(shapes)
      13257290
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
      >>> param_count(jax.eval_shape(IBPLarge(hidden=200).init, jax.random.key(0), x))
      5426402
    """

    num_classes: int = 10
    hidden: int = 512
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]`` (``train`` is unused)."""
        del train
        x = normalize(x, self.mean, self.std)
        convs = (
            (64, 3, 1, "SAME"),
            (64, 3, 1, "SAME"),
            (128, 3, 2, "SAME"),
            (128, 3, 1, "SAME"),
            (128, 3, 1, "SAME"),
        )
        return _conv_dense_stack(x, convs, (self.hidden,), self.num_classes)
