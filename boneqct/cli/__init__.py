"""The ``boneqct`` command line.

Each subcommand reads its input through ``boneqct.io``, calls the core, and writes its results
atomically. Problems with the input end with a one-paragraph message on stderr and exit code 2,
never a traceback; messages and logs carry no patient identity.

Subcommands live in one module per measurement, each with a ``register(subparsers)``
function; add a module to ``COMMAND_MODULES`` to add its commands.
"""

from __future__ import annotations

import argparse
import sys

from boneqct import __version__
from boneqct.cli import ct, fe, hip, qa, spine, tissue
from boneqct.errors import BoneQCTError

EXIT_INPUT_ERROR = 2
COMMAND_MODULES = (ct, spine, qa, tissue, hip, fe)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``boneqct`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except BoneQCTError as exc:
        print(f"boneqct {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every module's subcommands."""
    parser = argparse.ArgumentParser(
        prog="boneqct",
        description="Calibrated bone densitometry from clinical CT: calibration, spine QCT, "
                    "digital phantoms.",
    )
    parser.add_argument("--version", action="version", version=f"boneqct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser
