"""The `ppxgb` command line.

Each role contributes its own subcommands through a `register(subparsers)` function in
its `cli` module (ppxgb.training.cli, ppxgb.proxy.cli, ppxgb.inference.cli, ...), so the
core never depends on a role's internals and a role never imports another role.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PPXGBError

#: Modules whose register(subparsers) adds subcommands; missing ones are skipped.
COMMAND_MODULES = (
    "ppxgb.training.cli",
    "ppxgb.training.vertical_cli",
    "ppxgb.proxy.cli",
    "ppxgb.inference.cli",
    "ppxgb.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppxgb", description="Privacy-preserving XGBoost: secure training and encrypted inference.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except PPXGBError as exc:
        print(f"ppxgb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppxgb: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
