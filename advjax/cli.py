"""The ``advjax`` command."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from advjax._quickstart import QuickstartConfig, run_quickstart


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``advjax`` command.

    One sub-command, ``quickstart``, with one flag per field of
    ``QuickstartConfig`` (``--epochs``, ``--train-eps``, ``--progress`` /
    ``--no-progress``, ...; defaults are the config's).

    Returns:
      The ``argparse.ArgumentParser`` (``prog="advjax"``).

    Example:
      >>> from advjax.cli import build_parser
      >>> args = build_parser().parse_args(
      ...     ["quickstart", "--epochs", "2", "--eval-epsilons", "0.1", "0.3", "--no-progress"])
      >>> args.command, args.epochs, args.eval_epsilons, args.progress
      ('quickstart', 2, [0.1, 0.3], False)
    """
    parser = argparse.ArgumentParser(prog="advjax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser(
        "quickstart",
        help="adversarially train a small MNIST CNN on the embedded data, attack it, report",
    )
    _add_config_flags(quick, QuickstartConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``advjax`` console script.

    Parses ``argv`` and runs the sub-command;
    ``advjax quickstart`` trains, attacks and writes its run directory
    (minutes on a laptop CPU; ``advjax quickstart --help`` lists the flags).

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv``.

    Returns:
      The exit status, 0 on success.

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
    """
    args = build_parser().parse_args(argv)
    if args.command == "quickstart":
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(QuickstartConfig)}
        values["eval_epsilons"] = tuple(values["eval_epsilons"])
        run_quickstart(QuickstartConfig(**values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
