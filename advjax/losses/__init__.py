"""Per-example objectives of logits shared by attacks and training."""

from advjax.losses._losses import (
    Loss,
    as_labels,
    as_probabilities,
    ce,
    cw_margin,
    dlr,
    dlr_targeted,
    get_loss,
    kl,
)

__all__ = [
    "Loss",
    "as_labels",
    "as_probabilities",
    "ce",
    "cw_margin",
    "dlr",
    "dlr_targeted",
    "get_loss",
    "kl",
]
