"""The `ppxgb` command line.

Every group of subcommands lives in its own module of the app layer and adds itself
through `register(subparsers)`: training as processes (train_cli, vertical_cli), the
proxy (proxy_cli), the scoring server and client app (inference_cli), and the demo.
The roles underneath never import this layer.

    python -m ppxgb.app.cli COMMAND ...     is the same as     ppxgb COMMAND ...
"""

from __future__ import annotations

import argparse
import sys

from ppxgb.errors import PPXGBError

from . import demo, inference_cli, proxy_cli, train_cli, vertical_cli

#: The modules whose register(subparsers) adds subcommands, in --help order.
COMMAND_MODULES = (train_cli, vertical_cli, proxy_cli, inference_cli, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppxgb", description="Privacy-preserving XGBoost: secure training and encrypted inference.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
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
