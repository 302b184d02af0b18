"""Defenses: input preprocessors, detectors, ensembles, a rejecting guard, and their evaluation.

Every defense here is meant to be evaluated with :func:`evaluate_defense`,
which attacks it adaptively (BPDA, EOT, joint detector-classifier objectives);
see ``docs/defenses.md``.
"""

from advjax.defenses._autoencoder import Autoencoder, train_autoencoder
from advjax.defenses._detectors import (
    Detector,
    batched_scores,
    calibrate,
    confidence_detector,
    entropy_detector,
    false_positive_rate,
    feature_squeezing_detector,
    layer_features,
    mahalanobis_detector,
    reconstruction_detector,
)
from advjax.defenses._ensemble import agreement, ensemble, soft_agreement
from advjax.defenses._evaluate import (
    DefenseResult,
    RandomizedWithoutEOTWarning,
    evaluate_defense,
    to_markdown,
)
from advjax.defenses._guard import ABSTAIN, Guarded, guard
from advjax.defenses._jpeg import dct_matrix, jpeg, jpeg_compress, quantization_tables
from advjax.defenses._preprocess import (
    DefendedLogits,
    Preprocessor,
    bit_depth,
    chain,
    gaussian_noise,
    gaussian_smoothing,
    median_smoothing,
    preprocess,
    random_resize_pad,
)
from advjax.defenses._registry import get_preprocessor

__all__ = [
    "ABSTAIN",
    "Autoencoder",
    "DefendedLogits",
    "DefenseResult",
    "Detector",
    "Guarded",
    "Preprocessor",
    "RandomizedWithoutEOTWarning",
    "agreement",
    "batched_scores",
    "bit_depth",
    "calibrate",
    "chain",
    "confidence_detector",
    "dct_matrix",
    "ensemble",
    "entropy_detector",
    "evaluate_defense",
    "false_positive_rate",
    "feature_squeezing_detector",
    "gaussian_noise",
    "gaussian_smoothing",
    "get_preprocessor",
    "guard",
    "jpeg",
    "jpeg_compress",
    "layer_features",
    "mahalanobis_detector",
    "median_smoothing",
    "preprocess",
    "quantization_tables",
    "random_resize_pad",
    "reconstruction_detector",
    "soft_agreement",
    "to_markdown",
    "train_autoencoder",
]
