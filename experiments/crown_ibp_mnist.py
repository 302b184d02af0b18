"""CROWN-IBP training on MNIST (Zhang et al., 2020), scaled to the shared 5k training set.

Recipe: the schedule of ``ibp_mnist.py``, so the two compare directly: Adam
(lr 1e-3, decayed 10x at 60% and 80% of training), batch 100, ``--warmup``
clean epochs, then a ``--ramp``-epoch ramp of eps (0 to ``--train-eps``), of
kappa (``--kappa-start`` to ``--kappa-end``) and of the CROWN-IBP weight beta
(the paper's beta, 1 to 0: CROWN-IBP bounds at the start of the ramp, pure IBP
at its end). The paper's MNIST configuration trains on the robust loss alone:
``--kappa-start 0 --kappa-end 0``. From the first epoch after the ramp (beta
is 0) training goes on with the IBP objective, the same loss without the
CROWN pass. Evaluates like
``ibp_mnist.py`` (IBP and CROWN-IBP verified accuracy, PGD check).

    python experiments/crown_ibp_mnist.py --model ibp_small --eps 0.3 --train-eps 0.4 \
        --pgd-examples 500

Note: on CPU a CROWN-IBP step on ibp_small costs about 7x an IBP step
(``experiments/benchmarks/certify_overhead.py --model ibp_small --train-steps``), so
the ramp dominates the training time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _certified_common import add_eval_flags, evaluate, load_data, train_loop  # noqa: E402

from advjax.train import crown_ibp_training, epsilon_ramp, ibp_training  # noqa: E402


def main(argv=None) -> None:
    """Parses flags, trains, evaluates."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="ibp_small", choices=["ibp_small", "ibp_medium"])
    p.add_argument("--eps", type=float, default=0.3, help="test epsilon")
    p.add_argument("--train-eps", type=float, default=None, help="default: 1.1 x --eps")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--ramp", type=float, default=40)
    p.add_argument("--shape", default="linear", choices=["linear", "smooth"])
    p.add_argument("--kappa-start", type=float, default=1.0)
    p.add_argument("--kappa-end", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--methods", default="ibp,crown-ibp")
    add_eval_flags(p)
    args = p.parse_args(argv)
    train_eps = 1.1 * args.eps if args.train_eps is None else args.train_eps
    train_set, x_test, y_test = load_data()
    spe = len(train_set.labels) // args.batch_size
    warmup_steps, ramp_steps = int(args.warmup * spe), int(args.ramp * spe)
    kw = dict(start_step=warmup_steps, kind=args.shape)
    eps = epsilon_ramp(train_eps, ramp_steps, **kw)
    kappa = epsilon_ramp(args.kappa_end, ramp_steps, initial=args.kappa_start, **kw)
    beta = epsilon_ramp(0.0, ramp_steps, initial=1.0, **kw)  # CROWN-IBP weight 1 -> 0
    objective = crown_ibp_training(eps, kappa=kappa, beta=beta)
    # From the first epoch after the ramp beta is 0: the same loss without the CROWN pass.
    ramp_end = warmup_steps + ramp_steps
    switch = (-(-ramp_end // spe), ibp_training(eps, kappa=kappa))
    print(f"CROWN-IBP {args.model} test eps {args.eps} train eps {train_eps}", flush=True)
    model, variables, seconds = train_loop(
        args.model,
        objective,
        train_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        switch=switch,
    )
    print(f"training time: {seconds:.0f} s", flush=True)
    n = args.n_test
    evaluate(model, variables, x_test[:n], y_test[:n], [args.eps], args, args.methods.split(","))


if __name__ == "__main__":
    main()
