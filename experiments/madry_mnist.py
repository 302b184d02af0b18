"""PGD adversarial training on MNIST (Madry et al. 2018), eps 0.3.

Paper: PGD-40 (step 0.01) training of the Madry CNN for ~100k steps of batch 50
(~83 epochs of 60k images), Adam 1e-4; 98.8% clean, 89.3% under PGD-100 (their
strongest white-box PGD) at eps 0.3. Here: 5k training images, an eps ramp over
the first 30% of training (without one small nets collapse to a constant
prediction on 5k images), Adam with a triangular rate.

    python experiments/madry_mnist.py [--epochs 20] [--train-steps 40] [--model madry_cnn]
"""

from __future__ import annotations

import _mnist_common as common
import optax

import advjax
from advjax import train

PAPER = "Madry CNN, 60k images: 98.8% clean, 89.3% PGD-100 (eps 0.3)"


def main() -> None:
    p = common.parser(__doc__.splitlines()[0], epochs=20, model="madry_cnn", lr=1e-3)
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--train-step-size", type=float, default=0.01)
    p.add_argument("--ramp", type=float, default=0.3, help="eps ramp, fraction of training")
    common.add_awp_flags(p)
    args = p.parse_args()
    train_set, x_test, y_test = common.load_data(args)
    total = args.epochs * common.steps_per_epoch(args, train_set)
    model, state = common.make_state(
        args, train_set, optax.adam(train.triangular_lr(args.lr, total))
    )
    ratio = args.train_step_size / common.EPS

    def make_attack(eps):  # step size scales with the ramped budget
        return advjax.pgd(eps, steps=args.train_steps, step_size=ratio * eps, keep_best=False)

    epsilon = train.epsilon_ramp(common.EPS, int(args.ramp * total))
    objective = common.with_awp(args, train.pgd_at(make_attack, epsilon), train_set)
    step = train.make_step(objective)
    result = common.run_fit(args, state, train_set, step, eval_fn=common.monitor(train_set))
    common.final_eval(
        args,
        train.eval_logits(result.state),
        x_test,
        y_test,
        name=f"madry_mnist ({args.model}, PGD-{args.train_steps} step {args.train_step_size}"
        f"{common.awp_suffix(args)})",
        paper=PAPER,
        train_seconds=result.train_seconds,
    )


if __name__ == "__main__":
    main()
