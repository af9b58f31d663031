"""The `ppxgb` command line.

Every group of subcommands lives in its own module of the app layer and adds itself
through `register(subparsers)`: training as processes (train_cli, vertical_cli), TLS
material for a deployment (certs_cli), the proxy (proxy_cli), the scoring server and
client app (inference_cli), and the demo.  The roles underneath never import this layer.

Errors are one line, `ppxgb: error: ...`, never a traceback: exit code 2 for bad input
(a ppxgb error), 1 for anything unexpected (set PPXGB_DEBUG=1 to see its traceback).

    python -m ppxgb.app.cli COMMAND ...     is the same as     ppxgb COMMAND ...
"""

from __future__ import annotations

import argparse
import os
import sys

from ppxgb import __version__
from ppxgb.errors import PPXGBError

from . import certs_cli, demo, inference_cli, oblivious_cli, proxy_cli, relay_cli, train_cli, vertical_cli, warmup_cli

#: The modules whose register(subparsers) adds subcommands, in --help order.
COMMAND_MODULES = (train_cli, vertical_cli, oblivious_cli, certs_cli, relay_cli, proxy_cli, inference_cli, demo, warmup_cli)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default (options without help text get one too)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppxgb", description="Privacy-preserving XGBoost: secure training and encrypted inference.")
    parser.add_argument("--version", action="version", version=f"ppxgb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    for p in _all_parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "failed"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except PPXGBError as exc:
        print(f"ppxgb: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppxgb: interrupted", file=sys.stderr)
        return 130
    except (OSError, UnicodeDecodeError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"ppxgb: error: {where}{_one_line(getattr(exc, 'strerror', None) or exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the command line never shows a traceback
        if os.environ.get("PPXGB_DEBUG"):
            raise
        print(f"ppxgb: error: {args.command}: unexpected {type(exc).__name__}: {_one_line(exc)} "
              "(PPXGB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
