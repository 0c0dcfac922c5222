"""The ``boneqct`` command line.

Each subcommand reads its input through ``boneqct.io``, calls the core, and writes its results
atomically. Problems with the input end with a one-paragraph message on stderr and exit code 2,
never a traceback; messages and logs carry no patient identity.

Subcommands live in one module per measurement, each with a ``register(subparsers)``
function; add a module to ``COMMAND_MODULES`` to add its commands. The command line is made
unambiguous before parsing (``argv``: negative coordinates, spaced level lists), and the core's
long steps are shown on a terminal (``progress_display``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

from boneqct import __version__
from boneqct.cli import batch, ct, detect, fe, fe_hip, hip, qa, screw, spine, tissue, vfa
from boneqct.cli.argv import normalize_argv
from boneqct.cli.progress_display import terminal_progress
from boneqct.errors import BoneQCTError
from boneqct.progress import reporting

EXIT_INPUT_ERROR = 2
COMMAND_MODULES = (ct, spine, detect, qa, tissue, hip, fe, fe_hip, batch, vfa, screw)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``boneqct`` console script."""
    parser = build_parser()
    args = parser.parse_args(normalize_argv(parser, sys.argv[1:] if argv is None else argv))
    _refuse_empty_values(parser, args)
    stdout = _PipeGuard(sys.stdout)
    try:
        with (contextlib.redirect_stdout(stdout),
              terminal_progress(getattr(args, "quiet", False)) as display, reporting(display)):
            status = args.handler(args) or 0
            stdout.flush()
        if stdout.broken:  # standard output to devnull: its flush at exit fails no more
            _silence_stdout()
        return status
    except BoneQCTError as exc:
        print(f"boneqct {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as exc:
        # the file system refused (name too long, no space, no permission): the user's to fix
        name = Path(exc.filename).name[:60] if exc.filename else "a file"
        print(f"boneqct {args.command}: error: {exc.strerror or exc} ('{name}'). Check the path, "
              "its permissions and the free disk space.", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except MemoryError:
        print(f"boneqct {args.command}: error: this machine ran out of memory. Crop the CT to the "
              "region measured, or use a machine with more memory.", file=sys.stderr)
        return EXIT_INPUT_ERROR


class _PipeGuard(io.TextIOBase):
    """Standard output that outlives its reader: once the reader of a pipe has gone
    (`boneqct info --json | head`) what is printed is dropped, the command finishes its work
    (its files) and exits with its own status; ``broken`` says it happened."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.broken = True

    def isatty(self) -> bool:
        return self.stream.isatty()


def _silence_stdout() -> None:
    """Point standard output's file descriptor at devnull (where it has one)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # no descriptor (an embedding application's stream): nothing to flush at exit


def _refuse_empty_values(parser: argparse.ArgumentParser, args) -> None:
    """argparse turns ``--option=--`` into an empty list without calling the option's type (so
    no range check runs); refuse it as a usage error (exit 2)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subparsers.choices[args.command]._actions:
        if isinstance(action, argparse._StoreAction) and action.nargs is None \
                and isinstance(getattr(args, action.dest, None), list) \
                and action.option_strings:
            subparsers.choices[args.command].error(f"argument {action.option_strings[0]}: "
                                                   "expected a value")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every module's subcommands."""
    parser = argparse.ArgumentParser(
        prog="boneqct",
        description="Calibrated bone densitometry from clinical CT: calibration, spine QCT, "
                    "hip CTXA, vertebral finite elements, tissue composition, QA, digital "
                    "phantoms. `boneqct COMMAND --help` shows each command's options and an "
                    "example.",
        epilog="example:\n  boneqct phantom spine --out phantom && boneqct spine "
               "phantom/dicom --phantom mindways-model3 --seed L1=0,-25,29 --seed L2=0,-25,0 "
               "--out spine-out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"boneqct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser
