"""PGD-10 adversarial training of PreAct ResNet-18 on CIFAR-10 (Madry et al.; Rice et al. 2020).

Rice, Wong & Kolter (2020) "Overfitting in adversarially robust deep learning":
PGD-10 (step 2/255, eps 8/255), SGD lr 0.1 (x0.1 at 50% and 75%), momentum
0.9, weight decay 5e-4, batch 128, 200 epochs; best checkpoint (early stopping
on PGD accuracy of a held-out set) 82.7% clean / 52-53% PGD, final epoch much
lower (robust overfitting). GPU-sized; ``--synthetic --epochs 1 --train-size 64``
is a CPU smoke test.

    python experiments/cifar10_pgd_at.py [--epochs 200] [--bf16]
"""

from __future__ import annotations

import _cifar_common as common
import optax

import advjax
from advjax import data, train


def main() -> None:
    p = common.parser(
        __doc__.splitlines()[0], epochs=200, model="preact_resnet18", lr=0.1, batch_size=128
    )
    p.add_argument("--train-steps", type=int, default=10)
    args = p.parse_args()
    train_set, x_test, y_test = common.load_data(args)
    total = max(args.epochs * data.num_batches(len(train_set), args.batch_size), 1)
    tx = optax.chain(
        optax.add_decayed_weights(5e-4),
        optax.sgd(train.piecewise_lr(args.lr, total), momentum=0.9),
    )
    state = common.make_state(args, train_set, tx)
    steps = args.train_steps

    def make_attack(eps):
        return advjax.pgd(eps, steps=steps, step_size=2 / 255, keep_best=False)

    common.run(
        args,
        state,
        train_set,
        train.pgd_at(make_attack, common.EPS),
        x_test,
        y_test,
        name=f"cifar10_pgd_at (PreAct ResNet-18, PGD-{steps})",
        paper="Rice et al.: PreAct ResNet-18 PGD-10, best checkpoint 82.7% clean / ~53% PGD",
    )


if __name__ == "__main__":
    main()
