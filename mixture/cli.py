"""The `mixture` command line: one thin subcommand per task.

Each subcommand parses its arguments, calls one library function and prints the result. This module is
the one place that reaches into the other packages, and it does so inside the subcommand that needs them,
so that `mixture validate|compile|explain|export` never import torch, streaming or composer.
Subcommands of other packages register themselves through a `register(subparsers)` function in a module
that is itself cheap to import (it must not import torch, streaming or composer at module level).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from mixture.errors import MixtureError
from mixture.progress import QUIET_ENV

# Modules whose `register(subparsers)` adds subcommands; each is imported at start-up, so each must keep
# heavy imports inside its handlers. All are part of this distribution: none is optional, so a failing
# import is an error, never a silently missing subcommand (optional extras, e.g. lm-eval for `eval-text`,
# are imported inside their handlers and say what to install).
_REGISTRARS: tuple[str, ...] = (
    "mixture.commands",
    "mixture.starter",
    "trainer.sweep.cli",  # listed where `sweep` has always appeared in `mixture --help`
    "streaming_data.cli",
    "trainer.cli",
    "trainer.demo.cli",
    "trainer.evaluation.cli",
    "analysis.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (every subcommand of every package)."""
    parser = argparse.ArgumentParser(
        prog="mixture",
        description="Data mixtures and curricula for vision-language model pre-training.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress lines")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _REGISTRARS:
        importlib.import_module(name).register(subparsers)
    _finish_subcommands(parser)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mixture-toolkit")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _finish_subcommands(parser: argparse.ArgumentParser) -> None:
    """Every (nested) subcommand: ``-q/--quiet`` after its name too, and its help as description if unset."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if not sub.description and helps.get(name):
                sub.description = helps[name][0].upper() + helps[name][1:] + "."
            if "--quiet" not in sub._option_string_actions:
                sub.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                                 help="no progress bars or progress lines")
            _finish_subcommands(sub)


def validate_run_config(path: str, data: dict) -> str | None:
    """`mixture validate` of a run config (recognised by its top-level keys): check it, return a summary.

    Returns None when ``data`` reads as a mixture file. The check (``trainer.config.check_run_config``)
    imports neither torch nor composer.

    Raises:
        MixtureError: Every problem of the run config, located.
    """
    from mixture.spec import MixtureSpec
    from trainer.config import RunConfig, check_run_config

    keys = set(data)
    if len(keys & set(RunConfig.model_fields)) <= len(keys & set(MixtureSpec.model_fields)):
        return None
    config, _ = check_run_config(path)
    return f"{path}: ok (run config: schedule {config.schedule}{', variant ' + config.variant if config.variant else ''})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ[QUIET_ENV] = "1"  # read by mixture.progress, here and in processes this one starts
    handler: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return int(handler(args) or 0)
    except MixtureError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
