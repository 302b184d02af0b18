"""Adversarial-example detectors: a score per input and a threshold set on clean data.

A :class:`Detector` holds ``score_fn: x[B, ...] -> score[B]`` (higher means
more suspicious) and, once :func:`calibrate`-d, the threshold above which an
input is flagged: the ``1 - fpr`` quantile of the scores of clean inputs, so
that about a fraction ``fpr`` of clean inputs is flagged. ``attack_score_fn``
is the differentiable version an adaptive attacker uses (BPDA through
non-differentiable squeezers); ``scale`` (the spread of the clean scores)
normalises ``score - threshold`` when several detectors are attacked jointly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from advjax.defenses._preprocess import Preprocessor, bit_depth, median_smoothing

ScoreFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Detector:
    """A score function and, once calibrated, a threshold.

    Attributes:
      name: label for reports.
      score_fn: ``x -> score[B]``, higher is more suspicious.
      attack_score_fn: a differentiable ``x -> score[B]`` with the same forward
        values (BPDA); ``None`` means ``score_fn`` is differentiable.
      threshold: inputs with ``score > threshold`` are flagged; ``None`` until calibrated.
      fpr: the false-positive rate the threshold was calibrated for.
      scale: the spread (std) of clean scores, for normalised margins.

    ``scores(x)`` gives ``score[B]``; ``flags(x)`` gives ``bool[B]`` and
    ``margin(x)`` gives ``(score - threshold) / scale`` as ``[B]``, both once a
    threshold is set (usually by :func:`calibrate`).

    Raises:
      ValueError: ``flags`` or ``margin`` on a detector without a threshold.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import Detector
      >>> x = jnp.array([[0.5, 0.0], [3.0, 4.0]])
      >>> det = Detector("l1", lambda x: jnp.abs(x).sum(axis=1))
      >>> det.scores(x).tolist()
      [0.5, 7.0]
      >>> det.flags(x)
      Traceback (most recent call last):
        ...
      ValueError: detector 'l1' is not calibrated: call calibrate(...)
      >>> det = Detector("l1", lambda x: jnp.abs(x).sum(axis=1), threshold=1.0, scale=2.0)
      >>> det.flags(x).tolist(), det.margin(x).tolist()
      ([False, True], [-0.25, 3.0])
    """

    name: str
    score_fn: ScoreFn
    attack_score_fn: ScoreFn | None = None
    threshold: float | None = None
    fpr: float | None = None
    scale: float = 1.0

    def scores(self, x: jax.Array) -> jax.Array:
        """Per-example scores (higher is more suspicious)."""
        return self.score_fn(x)

    def _require_threshold(self) -> float:
        if self.threshold is None:
            raise ValueError(f"detector {self.name!r} is not calibrated: call calibrate(...)")
        return self.threshold

    def flags(self, x: jax.Array) -> jax.Array:
        """``bool[B]``: which inputs are flagged as adversarial."""
        return self.score_fn(x) > self._require_threshold()

    def margin(self, x: jax.Array, *, adaptive: bool = True) -> jax.Array:
        """``(score - threshold) / scale``, positive when flagged (BPDA scores if ``adaptive``)."""
        fn = (
            self.attack_score_fn
            if (adaptive and self.attack_score_fn is not None)
            else self.score_fn
        )
        return (fn(x) - self._require_threshold()) / self.scale


def _check_fpr(fpr) -> float:
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise ValueError(f"fpr must be a number in (0, 1), got {fpr!r}")
    return float(fpr)


def batched_scores(score_fn: ScoreFn, x, batch_size: int = 500) -> np.ndarray:
    """Scores of ``x`` computed in jitted batches (numpy ``[N]``).

    Args:
      score_fn: ``x[B, ...] -> score[B]`` (jitted here; a last, smaller batch
        compiles once more).
      x: inputs ``[N, ...]`` (numpy or jax), ``N >= 1``.
      batch_size: inputs per jitted call.

    Returns:
      A numpy array ``[N]`` of the scores, in the order of ``x``.

    Raises:
      ValueError: when ``x`` is empty (there is nothing to concatenate).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import batched_scores
      >>> x = jnp.arange(10.0).reshape(5, 2)
      >>> batched_scores(lambda x: x.sum(axis=1), x, batch_size=2).tolist()
      [1.0, 5.0, 9.0, 13.0, 17.0]
    """
    jitted = jax.jit(score_fn)
    parts = [np.asarray(jitted(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def calibrate(detector: Detector, x_clean, fpr: float = 0.05, *, batch_size: int = 500) -> Detector:
    """Sets the threshold so that a fraction ``fpr`` of clean inputs is flagged.

    The threshold is the ``1 - fpr`` empirical quantile of the clean scores
    (inputs strictly above it are flagged). Use clean data the model and the
    detector were not fitted on; on fresh clean data the false-positive rate
    then matches ``fpr`` up to sampling error (about
    ``sqrt(fpr * (1 - fpr) / n)``).

    Args:
      detector: a detector (its threshold, if any, is replaced).
      x_clean: clean inputs.
      fpr: the target false-positive rate, in ``(0, 1)``.
      batch_size: scoring batch size.

    Returns:
      the calibrated detector.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import Detector, calibrate
      >>> det = Detector("norm", lambda x: jnp.abs(x).sum(axis=1))
      >>> x = jax.random.normal(jax.random.key(0), (10000, 2))
      >>> det = calibrate(det, x, fpr=0.1)
      >>> round(float(det.flags(x).mean()), 2)
      0.1
    """
    fpr = _check_fpr(fpr)
    if not isinstance(detector, Detector):
        raise TypeError(f"calibrate: expected a Detector, got {type(detector).__name__}")
    if len(x_clean) < 2:
        raise ValueError("calibrate: pass at least 2 clean inputs")
    scores = batched_scores(detector.score_fn, x_clean, batch_size)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"detector {detector.name!r} produced non-finite scores on clean data")
    threshold = float(np.quantile(scores, 1.0 - fpr))
    scale = float(np.std(scores)) or 1.0
    return dataclasses.replace(detector, threshold=threshold, fpr=fpr, scale=scale)


def false_positive_rate(detector: Detector, x_clean, *, batch_size: int = 500) -> float:
    """Fraction of ``x_clean`` that a calibrated detector flags.

    Args:
      detector: a detector with a threshold (see :func:`calibrate`).
      x_clean: clean inputs ``[N, ...]``, ideally not those it was calibrated on.
      batch_size: scoring batch size.

    Returns:
      The share of ``x_clean`` with ``score > threshold``, a float in ``[0, 1]``.

    Raises:
      ValueError: when the detector has no threshold, or ``x_clean`` is empty.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import Detector, false_positive_rate
      >>> det = Detector("l1", lambda x: jnp.abs(x).sum(axis=1), threshold=1.0)
      >>> false_positive_rate(det, jnp.array([[0.5], [2.0], [0.1], [0.2]]))
      0.25
    """
    threshold = detector._require_threshold()
    return float(np.mean(batched_scores(detector.score_fn, x_clean, batch_size) > threshold))


def confidence_detector(logits_fn: Callable) -> Detector:
    """Flags low-confidence inputs: score ``1 - max softmax probability``.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import confidence_detector
      >>> det = confidence_detector(lambda x: x)
      >>> det.scores(jnp.array([[10.0, 0.0], [0.0, 0.0]])).round(2).tolist()
      [0.0, 0.5]
    """

    def score(x):
        return 1.0 - jnp.max(jax.nn.softmax(logits_fn(x), axis=-1), axis=-1)

    return Detector("confidence", score)


def entropy_detector(logits_fn: Callable) -> Detector:
    """Flags uncertain inputs: score = entropy of the softmax (nats).

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import entropy_detector
      >>> round(float(entropy_detector(lambda x: x).scores(jnp.zeros((1, 2)))[0]), 4)
      0.6931
    """

    def score(x):
        log_p = jax.nn.log_softmax(logits_fn(x), axis=-1)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    return Detector("entropy", score)


def feature_squeezing_detector(
    logits_fn: Callable, squeezers: Sequence[Preprocessor] | None = None
) -> Detector:
    """Feature squeezing (Xu et al. 2018): max L1 distance between softmax outputs.

    The score is ``max_i || softmax(f(x)) - softmax(f(squeeze_i(x))) ||_1``.
    The default squeezers are the paper's for MNIST: 1-bit depth and a 2x2
    median filter. Squeezers must be deterministic; the adaptive score runs
    them under BPDA.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import feature_squeezing_detector
      >>> f = lambda x: x.reshape(x.shape[0], -1)[:, :3] * 10
      >>> det = feature_squeezing_detector(f)
      >>> det.scores(jnp.zeros((2, 4, 4, 1))).tolist()
      [0.0, 0.0]
    """
    if squeezers is None:
        squeezers = (bit_depth(1), median_smoothing(2))
    squeezers = tuple(squeezers)
    if not squeezers:
        raise ValueError("feature_squeezing_detector: pass at least one squeezer")
    for s in squeezers:
        if not isinstance(s, Preprocessor):
            raise TypeError(f"squeezers must be Preprocessor objects, got {type(s).__name__}")
        if s.randomized:
            raise ValueError(
                f"feature squeezing needs deterministic squeezers; {s.name} is randomized"
            )

    def make(steps):
        def score(x):
            p = jax.nn.softmax(logits_fn(x), axis=-1)
            distances = [
                jnp.sum(jnp.abs(p - jax.nn.softmax(logits_fn(s(x)), axis=-1)), axis=-1)
                for s in steps
            ]
            return jnp.max(jnp.stack(distances), axis=0)

        return score

    names = ", ".join(s.name for s in squeezers)
    return Detector(
        f"feature_squeezing({names})",
        make(squeezers),
        attack_score_fn=make(tuple(s.bpda() for s in squeezers)),
    )


def reconstruction_detector(autoencoder_fn: Callable, *, name: str = "autoencoder") -> Detector:
    """Flags inputs the autoencoder reconstructs badly (MagNet; Meng & Chen 2017).

    Score: mean squared reconstruction error per example.

    Example:
      >>> import jax.numpy as jnp
      >>> from advjax.defenses import reconstruction_detector
      >>> det = reconstruction_detector(lambda x: jnp.zeros_like(x))
      >>> det.scores(jnp.full((1, 2, 2, 1), 0.5)).tolist()
      [0.25]
    """

    def score(x):
        error = (autoencoder_fn(x) - x) ** 2
        return jnp.mean(error.reshape(error.shape[0], -1), axis=-1)

    return Detector(name, score)


def layer_features(model, variables, layer: str, **apply_kwargs) -> Callable:
    """``x -> features[B, D]``: the flattened output of a named layer of a Flax model.

    Uses Flax's ``capture_intermediates``, so any submodule can be read without
    changing the model: ``layer`` is its name, or a ``/``-separated path for
    nested modules (``"block1/conv"``). For a zoo model the hidden layers are
    the named ``Dense``/``Conv`` modules (``"fc1"`` of ``fast_mnist`` is its
    100-unit hidden layer, before the ReLU). Pass the result to
    :func:`mahalanobis_detector` for the hidden-layer detector of Lee et al.
    (2018).

    Args:
      model: the Flax module.
      variables: its variables (``params`` and optional ``batch_stats``).
      layer: the submodule's name or path.
      **apply_kwargs: keyword arguments of ``model.apply`` (default
        ``train=False``: BatchNorm statistics and no dropout).

    Returns:
      ``x -> features[B, D]`` (eval mode, differentiable).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax import models
      >>> from advjax.defenses import layer_features
      >>> model = models.get_model("fast_mnist")
      >>> variables = models.init_model(model, jax.random.key(0), (28, 28, 1))
      >>> layer_features(model, variables, "fc1")(jnp.zeros((2, 28, 28, 1))).shape
      (2, 100)
    """
    path = tuple(part for part in str(layer).split("/") if part)
    if not path:
        raise ValueError("layer_features: layer must name a submodule")
    apply_kwargs = {"train": False, **apply_kwargs}

    def wanted(module, method_name):
        return method_name == "__call__" and tuple(module.path) == path

    def features(x):
        _, state = model.apply(
            variables, x, capture_intermediates=wanted, mutable=["intermediates"], **apply_kwargs
        )
        node = state.get("intermediates", {})
        for part in path:
            if part not in node:
                raise ValueError(
                    f"layer_features: no layer {layer!r} in {type(model).__name__}; its "
                    f"top-level layers are {sorted(variables.get('params', {}))}"
                )
            node = node[part]
        value = node["__call__"][0]
        return value.reshape(value.shape[0], -1)

    return features


def mahalanobis_detector(
    features_fn: Callable,
    x_fit,
    y_fit,
    *,
    num_classes: int | None = None,
    ridge: float = 1e-6,
    batch_size: int = 500,
    name: str = "mahalanobis",
) -> Detector:
    """Class-conditional Gaussians with a shared covariance on features (Lee et al. 2018).

    Fits per-class means and a shared (tied) covariance of ``features_fn(x)``
    on labelled clean data; the score is the smallest Mahalanobis distance to
    a class mean. ``features_fn`` may be the logits or a hidden layer
    (:func:`layer_features` reads one from a Flax model). (The
    paper's input pre-processing and per-layer ensemble are not included.)

    Args:
      features_fn: ``x -> features[B, D]``.
      x_fit: clean inputs to fit on.
      y_fit: their integer labels.
      num_classes: number of classes; ``None`` infers ``max(y) + 1``.
      ridge: added to the covariance diagonal (relative to its mean variance).
      batch_size: batch size for computing features.
      name: label for reports.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from advjax.defenses import mahalanobis_detector
      >>> x = jax.random.normal(jax.random.key(0), (200, 2))
      >>> y = (x[:, 0] > 0).astype(jnp.int32)
      >>> det = mahalanobis_detector(lambda x: x, x, y)
      >>> bool(det.scores(jnp.array([[50.0, 50.0]]))[0] > det.scores(x).max())
      True
    """
    features = batched_scores(lambda x: features_fn(x).reshape(x.shape[0], -1), x_fit, batch_size)
    features = features.astype(np.float64)
    labels = np.asarray(y_fit).astype(int)
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError("mahalanobis_detector: y_fit must be integer labels [N] matching x_fit")
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    means = np.zeros((k, features.shape[1]))
    centred = np.zeros_like(features)
    for c in range(k):
        members = labels == c
        if not members.any():
            raise ValueError(f"mahalanobis_detector: no fitting example of class {c}")
        means[c] = features[members].mean(axis=0)
        centred[members] = features[members] - means[c]
    covariance = centred.T @ centred / len(features)
    covariance += (
        ridge * max(np.trace(covariance) / len(covariance), 1e-12) * np.eye(len(covariance))
    )
    precision = jnp.asarray(np.linalg.inv(covariance), jnp.float32)
    means_j = jnp.asarray(means, jnp.float32)

    def score(x):
        f = features_fn(x).reshape(x.shape[0], -1)
        diff = f[:, None, :] - means_j[None]  # [B, K, D]
        distances = jnp.einsum("bkd,de,bke->bk", diff, precision, diff)
        return jnp.min(distances, axis=-1)

    return Detector(name, score)
