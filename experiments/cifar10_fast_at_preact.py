"""FGSM-RS fast adversarial training of PreAct ResNet-18 on CIFAR-10 (Wong et al. 2020).

Paper: eps 8/255, alpha 10/255, 15 epochs, batch 128, SGD momentum 0.9, weight
decay 5e-4, cyclic learning rate 0 -> 0.2 (at 40%) -> 0: 83.81% clean, 46.06%
PGD-50 x 10 (eps 8/255). GPU-sized; ``--synthetic --epochs 1 --train-size 64``
is a CPU smoke test.

    python experiments/cifar10_fast_at_preact.py [--epochs 15] [--bf16]
"""

from __future__ import annotations

import _cifar_common as common
import optax

from advjax import data, train


def main() -> None:
    p = common.parser(
        __doc__.splitlines()[0], epochs=15, model="preact_resnet18", lr=0.2, batch_size=128
    )
    p.add_argument("--alpha", type=float, default=10 / 255)
    args = p.parse_args()
    train_set, x_test, y_test = common.load_data(args)
    total = args.epochs * data.num_batches(len(train_set), args.batch_size)
    tx = optax.chain(
        optax.add_decayed_weights(5e-4),
        optax.sgd(train.triangular_lr(args.lr, max(total, 1)), momentum=0.9),
    )
    state = common.make_state(args, train_set, tx)
    objective = train.fgsm_rs(common.EPS, alpha=args.alpha)
    common.run(
        args,
        state,
        train_set,
        objective,
        x_test,
        y_test,
        name="cifar10_fast_at_preact",
        paper="PreAct ResNet-18, 15 epochs: 83.81% clean, 46.06% PGD-50x10 (eps 8/255)",
    )


if __name__ == "__main__":
    main()
