"""Pre-activation residual networks for CIFAR-scale inputs.

* :class:`PreActResNet18` -- He, Zhang, Ren & Sun (2016), "Identity Mappings in
  Deep Residual Networks" (arXiv:1603.05027), in the CIFAR variant used by
  Wong, Rice & Kolter (2020) and Rice, Wong & Kolter (2020).
* :class:`WideResNet` -- Zagoruyko & Komodakis (2016), "Wide Residual Networks"
  (arXiv:1605.07146), as used by TRADES and Madry et al. on CIFAR-10.

Only conv, BatchNorm, ReLU, add, mean (and dropout in train mode) are used.
BatchNorm uses ``momentum=0.9`` (PyTorch's 0.1) and ``epsilon=1e-5``; the
``train`` flag selects batch statistics (``True``) or running averages.
(One difference from PyTorch: Flax folds the *biased* batch variance into the
running variance, PyTorch the unbiased one.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from advjax.models._common import normalize

Initializer = Callable[..., jax.Array]

# PyTorch's default conv/linear weight init (kaiming_uniform with a=sqrt(5)).
_TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# WRN reference init: normal(0, sqrt(2 / (k * k * out_channels))).
_HE_FAN_OUT_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

_PAD1 = ((1, 1), (1, 1))


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm matching PyTorch defaults (momentum 0.1 == flax 0.9, eps 1e-5)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes of an NHWC tensor -> ``[B, C]``."""
    return jnp.mean(x, axis=(1, 2))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016, arXiv:1603.05027), shared by both ResNets.

    Spec: ``out = ReLU(BN(x))``; ``y = conv3x3(stride)(out)``;
    ``y = conv3x3(ReLU(BN(y)))`` (dropout before the second conv when
    ``dropout_rate > 0`` and training); returns ``y + shortcut`` where the
    shortcut is ``x`` or, when the stride is not 1 or the width changes, a 1x1
    strided conv of ``out``. Convs have no bias; 3x3 convs use padding 1.

    Attributes:
      features: Output channels.
      stride: Stride of the first 3x3 conv and of the shortcut conv.
      dropout_rate: Dropout probability between the two convs (train only).
      kernel_init: Conv kernel initializer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import init_model
      >>> block = PreActBlock(features=8, stride=2)
      >>> variables = init_model(block, jax.random.key(0), (4, 4, 4))
      >>> sorted(variables["params"])  # a 1x1 shortcut conv: the stride and width change
      ['bn1', 'bn2', 'conv1', 'conv2', 'shortcut']
      >>> y, state = block.apply(variables, jnp.ones((2, 4, 4, 4)), train=True,
      ...                        mutable=["batch_stats"])
      >>> y.shape, y.dtype
      ((2, 2, 2, 8), dtype('float32'))
    """

    features: int
    stride: int = 1
    dropout_rate: float = 0.0
    kernel_init: Initializer = _TORCH_DEFAULT_INIT

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Applies the block; ``train`` selects batch stats and enables dropout."""
        s = (self.stride, self.stride)
        out = nn.relu(_batch_norm(train, "bn1")(x))
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(
                self.features,
                (1, 1),
                strides=s,
                padding="VALID",
                use_bias=False,
                kernel_init=self.kernel_init,
                name="shortcut",
            )(out)
        else:
            shortcut = x
        y = nn.Conv(
            self.features,
            (3, 3),
            strides=s,
            padding=_PAD1,
            use_bias=False,
            kernel_init=self.kernel_init,
            name="conv1",
        )(out)
        y = nn.relu(_batch_norm(train, "bn2")(y))
        if train and self.dropout_rate > 0.0:
            y = nn.Dropout(self.dropout_rate, deterministic=False)(y)
        y = nn.Conv(
            self.features,
            (3, 3),
            padding=_PAD1,
            use_bias=False,
            kernel_init=self.kernel_init,
            name="conv2",
        )(y)
        return y + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 (He et al., 2016, arXiv:1603.05027) for 32x32 inputs.

    The variant of Wong et al. (2020, arXiv:2001.03994) and Rice et al. (2020,
    arXiv:2002.11569):

    * stem: conv 3x3, 64 filters, stride 1, padding 1, no bias
    * 4 stages of ``stage_sizes = (2, 2, 2, 2)`` :class:`PreActBlock` with widths
      64 / 128 / 256 / 512 and first-block strides 1 / 2 / 2 / 2
    * final BN + ReLU, global average pool, dense ``num_classes``

    11,172,170 trainable parameters for 10 classes (the final BN adds 1,024 to
    the 11,171,146 of the kuangliu/pytorch-cifar version, which lacks it).
    BatchNorm: momentum 0.9, epsilon 1e-5. Optional input normalisation
    ``(x - mean) / std`` is applied first when ``mean`` / ``std`` are set.

    Attributes:
      num_classes: Number of output logits.
      stage_sizes: Number of blocks per stage.
      mean: Optional per-channel input mean; ``None`` = no normalisation.
      std: Optional per-channel input std; ``None`` = no normalisation.

    Raises:
      ValueError: on ``init`` or ``apply``, if ``stage_sizes`` has not 4 entries.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> model = PreActResNet18()
      >>> x = jnp.zeros((1, 32, 32, 3))
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> sorted(shapes), param_count(shapes)
      (['batch_stats', 'params'], 11172170)
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
      >>> PreActResNet18(stage_sizes=(2, 2, 2)).init(jax.random.key(0), x)
      Traceback (most recent call last):
        ...
      ValueError: stage_sizes must have 4 entries, got (2, 2, 2)...
    """

    num_classes: int = 10
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]``; ``train`` uses batch statistics."""
        if len(self.stage_sizes) != 4:
            raise ValueError(f"stage_sizes must have 4 entries, got {self.stage_sizes!r}")
        x = normalize(x, self.mean, self.std)
        x = nn.Conv(
            64,
            (3, 3),
            padding=_PAD1,
            use_bias=False,
            kernel_init=_TORCH_DEFAULT_INIT,
            name="conv1",
        )(x)
        for i, (width, n_blocks) in enumerate(
            zip((64, 128, 256, 512), self.stage_sizes, strict=True)
        ):
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                x = PreActBlock(width, stride, name=f"layer{i + 1}_{j}")(x, train)
        x = nn.relu(_batch_norm(train, "bn")(x))
        x = _global_avg_pool(x)
        return nn.Dense(self.num_classes, kernel_init=_TORCH_DEFAULT_INIT, name="linear")(x)


class WideResNet(nn.Module):
    """Wide residual network WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis, 2016).

    "Wide Residual Networks" (arXiv:1605.07146).

    As used by TRADES (Zhang et al., 2019) and Madry et al. (2018) on CIFAR-10:

    * stem: conv 3x3, 16 filters, stride 1, padding 1, no bias
    * 3 groups of ``n = (depth - 4) / 6`` :class:`PreActBlock` with widths
      ``16k``, ``32k``, ``64k`` (``k = widen_factor``) and first-block strides
      1 / 2 / 2; BN-ReLU pre-activation, 1x1 shortcut convs where the shape
      changes, optional dropout between the two convs of each block
    * final BN + ReLU, global average pool, dense ``num_classes``

    WRN-28-10 has 36,479,194 and WRN-34-10 46,160,474 trainable parameters for
    10 classes (the TRADES code also defines an unused ``sub_block1`` whose
    parameters are not part of the network and are not reproduced here).
    Conv kernels use the reference He-normal (fan-out) init.

    Attributes:
      depth: Total depth; ``(depth - 4)`` must be divisible by 6.
      widen_factor: Width multiplier ``k``.
      num_classes: Number of output logits.
      dropout_rate: Dropout probability inside blocks (train only).
      mean: Optional per-channel input mean; ``None`` = no normalisation.
      std: Optional per-channel input std; ``None`` = no normalisation.

    Raises:
      ValueError: on ``init`` or ``apply``, if ``depth`` is not ``6n + 4`` with
        ``n >= 1``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.models import param_count
      >>> x = jnp.zeros((1, 32, 32, 3))
      >>> count = lambda m: param_count(jax.eval_shape(m.init, jax.random.key(0), x))
      >>> count(WideResNet(depth=28, widen_factor=10)), count(WideResNet(depth=34))
      (36479194, 46160474)
      >>> model = WideResNet(depth=10, widen_factor=1)
      >>> shapes = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compile
      >>> jax.eval_shape(model.apply, shapes, x).shape
      (1, 10)
      >>> WideResNet(depth=12).init(jax.random.key(0), x)
      Traceback (most recent call last):
        ...
      ValueError: WideResNet depth must be 6n + 4 with n >= 1, got 12...
    """

    depth: int = 28
    widen_factor: int = 10
    num_classes: int = 10
    dropout_rate: float = 0.0
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits ``[B, num_classes]``; ``train`` uses batch statistics."""
        if self.depth < 10 or (self.depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {self.depth}")
        n = (self.depth - 4) // 6
        k = self.widen_factor
        x = normalize(x, self.mean, self.std)
        x = nn.Conv(
            16, (3, 3), padding=_PAD1, use_bias=False, kernel_init=_HE_FAN_OUT_INIT, name="conv1"
        )(x)
        for i, (width, stride) in enumerate(zip((16 * k, 32 * k, 64 * k), (1, 2, 2), strict=True)):
            for j in range(n):
                x = PreActBlock(
                    width,
                    stride if j == 0 else 1,
                    dropout_rate=self.dropout_rate,
                    kernel_init=_HE_FAN_OUT_INIT,
                    name=f"block{i + 1}_{j}",
                )(x, train)
        x = nn.relu(_batch_norm(train, "bn")(x))
        x = _global_avg_pool(x)
        return nn.Dense(self.num_classes, name="fc")(x)
