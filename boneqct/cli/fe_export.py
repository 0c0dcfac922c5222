"""The ``--export inp,feb`` option of the finite-element commands: the material-mapped model
written for CalculiX/Abaqus (.inp) and FEBio (.feb) beside the results
(``boneqct.fe.export``)."""

from __future__ import annotations

import argparse


def export_formats(text: str) -> tuple[str, ...]:
    """argparse type of --export: the formats (a tuple: a list value means "no value" to
    ``boneqct.cli``'s check of empty options), or a usage error naming the choices."""
    from boneqct.errors import FEError
    from boneqct.fe.export import parse_formats

    try:
        return tuple(parse_formats(text))
    except FEError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_export_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--export FORMATS`` (default: none) to a finite-element command."""
    parser.add_argument("--export", type=export_formats, metavar="inp,feb",
                        help="also write the material-mapped model for other solvers: "
                             "CalculiX/Abaqus .inp, FEBio .feb (comma-separated)")


def write_fe_result(args, stem: str, writer, result, volume, title: str, flag: str = "",
                    add=None) -> int:
    """Write a finite-element result's output set (``writer(folder, result, metadata,
    anonymize=, export_formats=)``, with the --export formats, then ``add(folder, paths)``
    when given, e.g. the DICOM outputs) and print its summary line:
    ``title: strength (criterion), stiffness, elements``."""
    from boneqct.cli import common
    from boneqct.io.atomic import write_output_set

    add = add or (lambda folder, paths: paths)
    paths = write_output_set(args.out, stem, lambda folder: add(folder, writer(
        folder, result, volume.metadata, anonymize=args.anonymize,
        export_formats=args.export or ())))
    print(f"{title}: strength {result.strength_n:.0f} N ({result.criterion}), stiffness "
          f"{result.stiffness_n_mm:.0f} N/mm, {result.n_elements} elements of "
          f"{result.element_mm:g} mm{flag}")
    common.print_done(result, paths)
    return 0
