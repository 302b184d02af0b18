"""MART on MNIST (Wang et al. 2020), eps 0.3.

Paper (YisenWang/MART; ICLR 2020, MNIST results with a 4-conv + 3-dense CNN,
60k images): CE-PGD-40 with step 0.01 from x + 0.001 N(0, 1), beta 6; they
report ~98.9% clean and ~94-96% under PGD-20 at eps 0.3. Here: SmallCNN, 5k
training images, an eps ramp over the first 30%, Adam with a triangular rate.

    python experiments/mart_mnist.py [--epochs 20] [--beta 6] [--train-steps 40]
"""

from __future__ import annotations

import _mnist_common as common
import optax

from advjax import train

PAPER = "MART, MNIST CNN, 60k images, beta 6: ~98.9% clean, ~95% PGD-20 (eps 0.3)"


def main() -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=20, model="small_cnn", lr=1e-3)
    p.add_argument("--beta", type=float, default=6.0)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--train-step-size", type=float, default=0.01)
    p.add_argument("--ramp", type=float, default=0.3, help="eps ramp, fraction of training")
    args = p.parse_args()
    train_set, x_test, y_test = common.load_data(args)
    total = args.epochs * common.steps_per_epoch(args, train_set)
    _, state = common.make_state(args, train_set, optax.adam(train.triangular_lr(args.lr, total)))
    ratio = args.train_step_size / common.EPS
    objective = train.mart(
        train.epsilon_ramp(common.EPS, int(args.ramp * total)) if args.ramp > 0 else common.EPS,
        beta=args.beta,
        steps=args.train_steps,
        step_size=lambda eps: ratio * eps,
    )
    result = common.run_fit(
        args, state, train_set, train.make_step(objective), eval_fn=common.monitor(train_set)
    )
    common.final_eval(
        args,
        train.eval_logits(result.state),
        x_test,
        y_test,
        name=f"mart_mnist ({args.model}, beta {args.beta:g}, PGD-{args.train_steps})",
        paper=PAPER,
        train_seconds=result.train_seconds,
    )


if __name__ == "__main__":
    main()
