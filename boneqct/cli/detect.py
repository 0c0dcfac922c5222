"""Vertebra detection command: find and name the vertebral bodies, write them as markups."""

from __future__ import annotations

import sys

from boneqct.cli.common import (
    add_command,
    add_input,
    add_max_memory_option,
    add_out,
    load_input,
)
from boneqct.io.atomic import check_output_folder, write_output_set

DETECT_EXAMPLE = "boneqct detect ct_folder/ --out detect-out"


def register(sub) -> None:
    """Add the ``detect`` subcommand to the ``boneqct`` parser."""
    parser = add_command(sub, "detect", "find and name the vertebral bodies (no seeds): "
                         "markups to edit and pass to 'boneqct spine --seeds'", DETECT_EXAMPLE)
    add_input(parser)
    add_out(parser)
    parser.add_argument("--anonymize", action="store_true",
                        help="leave patient identity out of the outputs")
    parser.set_defaults(handler=_cmd_detect)
    add_max_memory_option(parser)  # the working grid's estimate names it


def _cmd_detect(args) -> int:
    from boneqct.errors import DetectionError
    from boneqct.io import anonymized_metadata, write_json_atomic
    from boneqct.spine.detect import detect_vertebrae
    from boneqct.spine.detect_report import write_detection_report
    from boneqct.spine.outputs import write_detected_levels

    check_output_folder(args.out)
    volume = load_input(args)
    try:
        result = detect_vertebrae(volume)
    except DetectionError as error:  # its advice names options of spine and vfa, not detect's
        if "--seed" not in str(error):
            raise
        raise DetectionError(f"{error} (--seeds, --seed and --labels are options of "
                             "boneqct spine and vfa.)") from None
    metadata = anonymized_metadata(volume.metadata) if args.anonymize else volume.metadata

    def write(folder):
        report, figure = write_detection_report(
            folder / "detection_report.pdf", folder / "detection.png", result, volume,
            metadata, anonymize=args.anonymize)
        return {"json": write_json_atomic(folder / "detection.json",
                                          {**result.to_dict(), "exam": metadata}),
                "markups": write_detected_levels(result, folder), "report": report,
                "figure": figure}

    paths = write_output_set(args.out, "detect", write)
    for lv in result.levels:
        print(f"{lv.level}: R,A,S {', '.join(f'{v:.1f}' for v in lv.centroid_ras_mm)} mm, "
              f"confidence {lv.confidence:.2f} ({lv.named_by})")
    print(f"markups: {paths['markups']} (edit, then: boneqct spine CT --seeds "
          f"{paths['markups'].name} ...)")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {paths['report']}")
    return 0
