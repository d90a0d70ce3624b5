"""The ``pixelssl`` console script: thin subcommands over the Python API.

Each module of ``pixelssl.cli`` adds its subcommands through a ``register(subparsers)`` function listed in
``_REGISTRARS``; each sets ``func(args) -> int`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pixelssl import __version__
from pixelssl.errors import PixelSSLError, Preempted

log = logging.getLogger("pixelssl")

# Modules that contribute subcommands (each defines register(subparsers)).
_REGISTRARS = (
    "pixelssl.cli.train",
    "pixelssl.cli.evaluate",
    "pixelssl.cli.inpaint",
    "pixelssl.cli.report",
    "pixelssl.cli.detect",
    "pixelssl.cli.data",
    "pixelssl.cli.export",
)


def setup_logging(verbose: bool = False) -> None:
    """Rich console logging for the CLI (library code only uses ``logging``)."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)],
        force=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixelssl", description="Dense self-supervised pre-training and evaluation.")
    parser.add_argument("--version", action="version", version=f"pixelssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _REGISTRARS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subsystem not present in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Preempted as exc:  # a checkpoint was written: a scheduler can requeue the same command
        print(f"stopped: {exc}", file=sys.stderr)
        return Preempted.exit_code
    except Exception as exc:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        if not isinstance(exc, (PixelSSLError, FileNotFoundError)):
            print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (PixelSSLError, FileNotFoundError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
