"""The ``advjax`` command: train, evaluate, certify and compare runs, and rebuild their reports.

advjax train pgd_at --out runs/A --set epochs=3
advjax eval runs/A --attack autoattack --eps 0.1 0.3
advjax certify runs/A --method ibp --eps 0.1
advjax compare runs/A runs/B --attack pgd --max-drop 1
advjax report runs/A
advjax list
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from advjax._quickstart import QuickstartConfig, run_quickstart

EXIT_ERROR = 2
"""Exit status for a bad command: a missing run, an unknown recipe, attack or key."""
EXIT_REGRESSION = 1
"""Exit status of ``advjax compare`` when run B drops by more than ``--max-drop``."""


def _add_config_flags(parser: argparse.ArgumentParser, config_type) -> None:
    for field in dataclasses.fields(config_type):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        elif field.name == "eval_epsilons":
            parser.add_argument(flag, type=float, nargs="+", default=list(field.default))
        else:
            kind = {"int": int, "float": float, "float | None": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default)


def _devices_flag() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="on a CPU backend, split the host into N XLA devices and run data-parallel "
        "over them (default: one per available core; 1 turns it off). No effect on GPU/TPU.",
    )
    return parent


def _command(commands, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_devices_flag()],
    )


def _split_cpu(requested: int | None) -> None:
    """One XLA CPU device per core (or ``requested``), before JAX starts its backends.

    When JAX has already started (``main`` called inside a notebook or a test)
    the devices it has are used; an explicit ``--cpu-devices`` that can no
    longer be applied is an error rather than silently ignored.
    """
    import jax

    from advjax.parallel import use_cpu_devices

    try:
        use_cpu_devices(requested)
    except RuntimeError as error:
        if requested is not None and requested != len(jax.devices("cpu")):
            raise _TooLate(str(error)) from None


class _TooLate(Exception):
    """``--cpu-devices N`` asked for after JAX had started with another count."""


def _add_eval_flags(parser: argparse.ArgumentParser) -> None:
    from advjax.runs import EVAL_ATTACKS

    parser.add_argument("--attack", default="pgd", choices=sorted(EVAL_ATTACKS))
    parser.add_argument(
        "--eps", type=float, nargs="+", default=None, help="budgets (default: the run's eps)"
    )
    parser.add_argument(
        "--norm", default=None, choices=sorted(THREAT_MODEL_LINES), help="default: the run's"
    )
    parser.add_argument("--n", type=int, default=1000, help="first N test examples")
    parser.add_argument("--seed", type=int, default=0, help="the attack's PRNG seed")
    parser.add_argument("--steps", type=int, default=None, help="iterations (Square: queries)")
    parser.add_argument("--restarts", type=int, default=None)
    parser.add_argument("--step-size", type=float, default=None, help="PGD's step")
    parser.add_argument("--data-dir", default=None, help="where the run's data set is")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``advjax`` command.

    Sub-commands: ``train``, ``eval``, ``certify``, ``compare``, ``report``,
    ``list`` and ``quickstart`` (one flag per field of ``QuickstartConfig``).
    Each command's ``--help`` ends with a runnable example.

    Returns:
      The ``argparse.ArgumentParser`` (``prog="advjax"``).

    Example:
      >>> from advjax.cli import build_parser
      >>> args = build_parser().parse_args(
      ...     ["quickstart", "--epochs", "2", "--eval-epsilons", "0.1", "0.3", "--no-progress"])
      >>> args.command, args.epochs, args.eval_epsilons, args.progress
      ('quickstart', 2, [0.1, 0.3], False)
      >>> args = build_parser().parse_args(["train", "trades", "--set", "beta=1", "epochs=2"])
      >>> args.recipe, args.set
      ('trades', ['beta=1', 'epochs=2'])
    """
    from advjax.runs import CERTIFY_METHODS

    parser = argparse.ArgumentParser(
        prog="advjax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = _command(
        commands,
        "train",
        "train a recipe into a run directory, then evaluate and certify it",
        "advjax train pgd_at --out runs/pgd_at --set epochs=3 train_size=1000",
    )
    train.add_argument("recipe", help="a recipe name (`advjax list`)")
    train.add_argument("--out", default=None, help="run directory (default: runs/RECIPE)")
    train.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="override recipe settings"
    )
    train.add_argument("--data", default=None, help="a named data set (`advjax list`)")
    train.add_argument("--data-dir", default=None, help="where the data set's files are")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    train.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    train.add_argument("--no-progress", action="store_true")

    evaluate = _command(
        commands,
        "eval",
        "measure a run's robust accuracy with an attack; the report is stored in the run",
        "advjax eval runs/pgd_at --attack autoattack --eps 0.1 0.3 --n 500",
    )
    evaluate.add_argument("run", help="a run directory")
    _add_eval_flags(evaluate)
    evaluate.add_argument("--fresh", action="store_true", help="ignore a stored matching report")
    evaluate.add_argument("--no-progress", action="store_true")

    certify = _command(
        commands,
        "certify",
        "certified accuracy of a run beside an attack's upper bound",
        "advjax certify runs/ibp --method ibp --eps 0.1",
    )
    certify.add_argument("run", help="a run directory")
    certify.add_argument("--method", default="ibp", choices=sorted(CERTIFY_METHODS))
    certify.add_argument(
        "--eps", type=float, nargs="+", default=None, help="budgets (smoothing: L2 radii)"
    )
    certify.add_argument("--n", type=int, default=1000, help="first N test examples")
    certify.add_argument("--seed", type=int, default=0)
    certify.add_argument("--pgd-steps", type=int, default=100)
    certify.add_argument("--pgd-restarts", type=int, default=10)
    certify.add_argument(
        "--pgd-examples", type=int, default=None, help="attack the first N only (default: all)"
    )
    certify.add_argument("--sigma", type=float, default=0.25, help="smoothing noise")
    certify.add_argument("--samples", type=int, default=1000, help="smoothing samples")
    certify.add_argument("--alpha", type=float, default=0.001, help="smoothing confidence")
    certify.add_argument("--data-dir", default=None)
    certify.add_argument("--fresh", action="store_true", help="ignore a stored matching report")
    certify.add_argument("--no-progress", action="store_true")

    compare = _command(
        commands,
        "compare",
        "evaluate two runs the same way; exit 1 when B is more than --max-drop points below A",
        "advjax compare runs/v1 runs/v2 --attack pgd --eps 0.3 --max-drop 1",
    )
    compare.add_argument("run_a", help="the reference run")
    compare.add_argument("run_b", help="the candidate run")
    _add_eval_flags(compare)
    compare.add_argument("--certify", default=None, choices=sorted(CERTIFY_METHODS))
    compare.add_argument("--max-drop", type=float, default=1.0, help="allowed drop in points")
    compare.add_argument("--no-progress", action="store_true")

    report = _command(
        commands,
        "report",
        "rebuild a run's Markdown and PNG reports from its stored JSON",
        "advjax report runs/pgd_at",
    )
    report.add_argument("run", help="a run directory")

    _command(
        commands,
        "list",
        "models, attacks, threat models, recipes, certification methods and data sets",
        "advjax list",
    )

    quick = _command(
        commands,
        "quickstart",
        "adversarially train a small MNIST CNN on the embedded data, attack it, report",
        "advjax quickstart --epochs 2 --eval-examples 200",
    )
    _add_config_flags(quick, QuickstartConfig)
    return parser


def _run_defaults(run, args, norm=None):
    """Budgets and norm: as given, else the run's; a budget never crosses norms silently."""
    from advjax.runs import RunError

    threat = run.config.get("threat", {})
    run_norm = threat.get("norm", "linf")
    norm = norm or args.norm or run_norm
    if args.eps:
        return tuple(args.eps), norm
    if norm != run_norm or "eps" not in threat:
        raise RunError(
            f"the run's budget is {threat.get('eps')} in {run_norm}; give --eps for {norm}."
        )
    return (threat["eps"],), norm


def _eval_spec(run, args):
    from advjax.runs import EvalSpec

    epsilons, norm = _run_defaults(run, args)
    return EvalSpec(
        args.attack,
        epsilons,
        norm=norm,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        restarts=args.restarts,
        step_size=args.step_size,
    )


def _train(args) -> int:
    from advjax.recipes import train_recipe

    out = args.out or f"runs/{args.recipe}"
    data = [f"data={args.data}"] if args.data else []
    data += [f"data_dir={args.data_dir}"] if args.data_dir else []
    outcome = train_recipe(
        args.recipe,
        out,
        overrides=data + args.set,
        resume=args.resume,
        progress=not args.no_progress,
        max_steps=args.max_steps,
        evaluate=not args.no_eval,
    )
    if not outcome.finished:
        print(f"stopped at --max-steps; continue: advjax train {args.recipe} --out {out} --resume")
        return 0
    print(f"\ntrained {args.recipe} in {outcome.train_seconds:.1f} s; run: {outcome.run_dir}")
    if outcome.stopped:
        print(f"early stop: {outcome.stopped}")
    for report in outcome.evaluations:
        _print_eval(report)
        print(f"  reproduce: advjax eval {out} {_spec_flags(report['spec'])}")
    if len(outcome.evaluations) > 1:
        pairs = ", ".join(f"eps {e:g}: {100 * a:.2f}%" for e, a in outcome.worst_case.items())
        print(f"worst case over {[r['spec']['attack'] for r in outcome.evaluations]}: {pairs}")
    for report in outcome.certifications:
        _print_certify(report)
    return 0


def _spec_flags(spec: dict) -> str:
    budgets = " ".join(f"{e:g}" for e in spec["epsilons"] if e > 0)  # 0 is always added
    flags = [f"--attack {spec['attack']}", f"--eps {budgets}"]
    flags += [f"--norm {spec['norm']}", f"--n {spec['n']}", f"--seed {spec['seed']}"]
    for name in ("steps", "restarts", "step_size"):
        if spec.get(name) is not None:
            flags.append(f"--{name.replace('_', '-')} {spec[name]:g}")
    return " ".join(flags)


def _print_eval(report: dict) -> None:
    from advjax import evaluation

    parsed = evaluation.RobustnessReport.from_dict(report["report"])
    reused = " (stored report reused)" if report.get("reused") else ""
    print(f"\n{report['spec']['attack']} on {parsed.num_examples} test images{reused}:")
    print(evaluation.format_table(parsed))
    for warning in parsed.warnings:
        print(f"WARNING (gradient masking?): {warning}")
    print(f"report: {report['directory']}/report.md")


def _print_certify(report: dict) -> None:
    print()
    print((Path(report["directory"]) / "report.md").read_text().rstrip())
    summary = report["summary"]
    if summary.get("consistent") is False:
        print("ERROR: an example certified yet broken by the attack: a soundness bug.")


def _eval(args) -> int:
    from advjax.runs import evaluate_run, load_run

    run = load_run(args.run)
    spec = _eval_spec(run, args)
    progress = not args.no_progress
    report = evaluate_run(
        run, spec, data_dir=args.data_dir, progress=progress, reuse=not args.fresh
    )
    _print_eval(report)
    return 0


def _certify_spec(run, args):
    from advjax.runs import CertifySpec

    if args.method == "smoothing":
        epsilons = tuple(args.eps) if args.eps else (0.0, 0.25, 0.5, 0.75, 1.0)
    else:  # the bounds are Linf bounds
        epsilons = _run_defaults(run, args, norm="linf")[0]
    return CertifySpec(
        args.method,
        epsilons,
        n=args.n,
        seed=args.seed,
        pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts,
        pgd_examples=args.pgd_examples,
        sigma=args.sigma,
        samples=args.samples,
        alpha=args.alpha,
    )


def _certify(args) -> int:
    from advjax.runs import certify_run, load_run

    run = load_run(args.run)
    spec = _certify_spec(run, args)
    progress = not args.no_progress
    report = certify_run(run, spec, data_dir=args.data_dir, progress=progress, reuse=not args.fresh)
    _print_certify(report)
    return 0 if report["summary"].get("consistent") is not False else EXIT_REGRESSION


def _compare(args) -> int:
    from advjax.runs import CertifySpec, compare_runs, load_run

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    spec = _eval_spec(run_a, args)
    certify_spec = None
    if args.certify:
        certify_spec = CertifySpec(args.certify, tuple(e for e in spec.epsilons if e > 0), n=args.n)
    comparison = compare_runs(
        run_a,
        run_b,
        spec,
        certify_spec=certify_spec,
        max_drop=args.max_drop,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    print(comparison.table())
    return 0 if comparison.passed else EXIT_REGRESSION


def _report(args) -> int:
    from advjax.runs import render_run

    print(f"report: {render_run(args.run)}")
    return 0


THREAT_MODEL_LINES = {
    "linf": "max_i |delta_i| <= eps (eps in input units, e.g. 8/255)",
    "l2": "||delta||_2 <= eps",
    "l1": "||delta||_1 <= eps",
    "l0": "at most eps input coordinates changed (eps is a count)",
}


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def _list(args) -> int:
    from advjax import attacks, data, models
    from advjax.recipes import RECIPES
    from advjax.runs import CERTIFY_METHODS, EVAL_ATTACKS

    sections = {
        "models (--set model=NAME)": {
            name: _first_line(type(models.get_model(name)).__doc__) for name in models.list_models()
        },
        "attacks (advjax eval --attack)": {k: v.description for k, v in EVAL_ATTACKS.items()},
        "threat models (--norm)": {
            name: THREAT_MODEL_LINES.get(name, f"the {name} ball of radius eps")
            for name in attacks.THREAT_MODELS
        },
        "recipes (advjax train)": {k: v.description for k, v in RECIPES.items()},
        "certification methods (advjax certify --method)": dict(CERTIFY_METHODS),
        "data sets (--set data=NAME)": {k: v.description for k, v in data.NAMED_DATASETS.items()},
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(len(name) for name in entries)
        for name, description in entries.items():
            print(f"  {name.ljust(width)}  {description}")
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``advjax`` console script.

    Parses ``argv`` and runs the sub-command. A bad run, recipe, key, data set
    or checkpoint prints the cause and the fix on stderr and returns 2;
    ``advjax compare`` returns 1 when run B drops by more than ``--max-drop``.

    On a CPU backend the command (``argv=None``: the ``advjax`` script,
    ``python -m advjax``) first splits the host into one XLA device per core
    (``--cpu-devices N`` to choose, 1 to turn it off), so training and
    evaluation run data-parallel over every core. Called with an argument list
    from a running program (a notebook, a test), it uses the devices JAX
    already has unless ``--cpu-devices`` is given; a count JAX can no longer
    take is an error (exit status 2).

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv``.

    Returns:
      The exit status: 0 on success, 1 for a robustness regression, 2 for an error.

    Raises:
      SystemExit: from ``argparse`` on ``--help`` (status 0) or on arguments it
        cannot parse (status 2, with the usage on stderr).

    Example:
      >>> import contextlib, io
      >>> from advjax.cli import main
      >>> stderr = io.StringIO()
      >>> try:
      ...     with contextlib.redirect_stderr(stderr):
      ...         main(["quickstart", "--epochs", "one"])
      ... except SystemExit as exit:
      ...     print("exit status", exit.code)
      exit status 2
      >>> stderr.getvalue().splitlines()[-1]
      "advjax quickstart: error: argument --epochs: invalid int value: 'one'"
      >>> with contextlib.redirect_stderr(io.StringIO()) as err:
      ...     main(["eval", "/nonexistent/run"])
      2
      >>> err.getvalue().split(";")[0]
      'advjax eval: error: run directory /nonexistent/run does not exist'
    """
    from advjax.data import DataError
    from advjax.recipes import RecipeError
    from advjax.runs import RunError
    from advjax.train import CheckpointError

    args = build_parser().parse_args(argv)
    # The command itself (argv None) splits the CPU by default; a program calling main()
    # keeps the devices it has unless it asks with --cpu-devices.
    if args.command != "list" and (argv is None or args.cpu_devices is not None):
        try:
            _split_cpu(args.cpu_devices)
        except (_TooLate, ValueError, TypeError) as error:
            print(f"advjax {args.command}: error: --cpu-devices: {error}", file=sys.stderr)
            return EXIT_ERROR
    handlers = {
        "train": _train,
        "eval": _eval,
        "certify": _certify,
        "compare": _compare,
        "report": _report,
        "list": _list,
    }
    if args.command == "quickstart":
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(QuickstartConfig)}
        values["eval_epsilons"] = tuple(values["eval_epsilons"])
        run_quickstart(QuickstartConfig(**values))
        return 0
    try:
        return handlers[args.command](args)
    except (RunError, RecipeError, DataError, CheckpointError) as error:
        print(f"advjax {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
