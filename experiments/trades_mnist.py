"""TRADES on MNIST (Zhang et al. 2019), beta 1 and 6, eps 0.3.

Paper (yaodongyu/TRADES, train_trades_mnist.py): SmallCNN, KL-PGD-40 with step
0.01 from x + 0.001 N(0, 1), SGD lr 0.01 momentum 0.9, batch 128, 100 epochs
of 60k images. The paper's Table 5 (MNIST, eps 0.3, beta 6 ~ 1/lambda):
99.48% clean, 96.07% under their PGD-40 (FGSM^k) white-box attack. Here:
5k training images, an eps ramp over the first 30% (as for PGD-AT), Adam with
a triangular rate; ``--beta`` picks one beta (run it with 1 and 6).

    python experiments/trades_mnist.py --beta 6 [--epochs 20] [--train-steps 40]
"""

from __future__ import annotations

import _mnist_common as common

from advjax import train

PAPER = {
    1.0: "SmallCNN, 60k images, beta 1: ~99.5% clean; paper reports beta 6 in its table",
    6.0: "SmallCNN, 60k images, beta 6: 99.48% clean, 96.07% PGD-40 (eps 0.3)",
}


def main() -> None:
    common.run_beta_recipe(
        __doc__.splitlines()[0],
        train.trades,
        name=lambda a: f"trades_mnist ({a.model}, beta {a.beta:g}, KL-PGD-{a.train_steps})",
        paper=lambda beta: PAPER.get(beta, "paper: beta 1 and 6 only"),
    )


if __name__ == "__main__":
    main()
