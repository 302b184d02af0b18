"""MART on MNIST (Wang et al. 2020), eps 0.3.

Paper (YisenWang/MART; ICLR 2020, MNIST results with a 4-conv + 3-dense CNN,
60k images): CE-PGD-40 with step 0.01 from x + 0.001 N(0, 1), beta 6; they
report ~98.9% clean and ~94-96% under PGD-20 at eps 0.3. Here: SmallCNN, 5k
training images, an eps ramp over the first 30%, Adam with a triangular rate.

    python experiments/mart_mnist.py [--epochs 20] [--beta 6] [--train-steps 40]
"""

from __future__ import annotations

import _mnist_common as common

from advjax import train

PAPER = "MART, MNIST CNN, 60k images, beta 6: ~98.9% clean, ~95% PGD-20 (eps 0.3)"


def main() -> None:
    common.run_beta_recipe(
        __doc__.splitlines()[0],
        train.mart,
        name=lambda a: f"mart_mnist ({a.model}, beta {a.beta:g}, PGD-{a.train_steps})",
        paper=lambda beta: PAPER,
    )


if __name__ == "__main__":
    main()
