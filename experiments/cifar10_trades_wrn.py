"""TRADES (beta 6) with WRN-34-10 on CIFAR-10 (Zhang et al. 2019).

Paper (yaodongyu/TRADES, train_trades_cifar10.py): KL-PGD-10, step 0.007, eps
0.031, beta 6, SGD lr 0.1 (x0.1 at epochs 75, 90, 100), momentum 0.9, weight
decay 2e-4, batch 128, 100 epochs: 84.92% clean, 56.61% PGD-20 (eps 0.031).
GPU-sized; ``--synthetic --epochs 1 --train-size 32 --depth 10 --widen 1`` is a
CPU smoke test.

    python experiments/cifar10_trades_wrn.py [--epochs 100] [--bf16]
"""

from __future__ import annotations

import _cifar_common as common
import optax

from advjax import data, train


def main() -> None:
    p = common.parser(
        __doc__.splitlines()[0], epochs=100, model="wide_resnet", lr=0.1, batch_size=128
    )
    p.add_argument("--beta", type=float, default=6.0)
    p.add_argument("--depth", type=int, default=34)
    p.add_argument("--widen", type=int, default=10)
    args = p.parse_args()
    train_set, x_test, y_test = common.load_data(args)
    total = max(args.epochs * data.num_batches(len(train_set), args.batch_size), 1)
    lr = train.piecewise_lr(args.lr, total, milestones=(0.75, 0.9))
    tx = optax.chain(optax.add_decayed_weights(2e-4), optax.sgd(lr, momentum=0.9))
    state = common.make_state(args, train_set, tx, depth=args.depth, widen_factor=args.widen)
    objective = train.trades(0.031, beta=args.beta, steps=10, step_size=0.007)
    common.run(
        args,
        state,
        train_set,
        objective,
        x_test,
        y_test,
        name=f"cifar10_trades_wrn (WRN-{args.depth}-{args.widen}, beta {args.beta:g})",
        paper="WRN-34-10, beta 6, 100 epochs: 84.92% clean, 56.61% PGD-20 (eps 0.031)",
    )


if __name__ == "__main__":
    main()
