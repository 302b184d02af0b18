"""The ``advjax`` command."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from advjax._quickstart import QuickstartConfig, run_quickstart
from advjax._xla_flags import use_fast_cpu_loops


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
    """The argument parser of the ``advjax`` command."""
    parser = argparse.ArgumentParser(prog="advjax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser(
        "quickstart",
        help="adversarially train a small MNIST CNN on the embedded data, attack it, report",
    )
    _add_config_flags(quick, QuickstartConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``advjax`` console script."""
    args = build_parser().parse_args(argv)
    use_fast_cpu_loops()
    if args.command == "quickstart":
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(QuickstartConfig)}
        values["eval_epsilons"] = tuple(values["eval_epsilons"])
        run_quickstart(QuickstartConfig(**values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
