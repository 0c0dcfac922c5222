"""Tissue composition command: tissue."""

from __future__ import annotations

from boneqct.cli import common
from boneqct.io.atomic import write_output_set
from boneqct.tissue.options import TissueOptions

TISSUE_EXAMPLE = ("boneqct tissue ct_folder/ --phantom mindways-model3 --l3 -4.7,12,30 "
                  "--out tissue-out")


def register(sub) -> None:
    """Add this module's subcommands to the ``boneqct`` parser."""
    t = common.add_measurement(sub, "tissue", "tissue composition: fat, muscle, skin, cortical and "
                        "cancellous mineral (mass, area, volume) of a slice, slab or scan",
                        TISSUE_EXAMPLE, _cmd_tissue, TissueOptions, memory_limit=False,
                        slice_thickness=True)
    t.add_argument("--l3", metavar="R,A,S", help="a point in L3 (RAS mm) for the skeletal "
                   "muscle area")
    t.add_argument("--anonymize", action="store_true", help="leave patient identity out")


def _cmd_tissue(args) -> int:
    from boneqct.tissue import analyze_tissue, write_tissue_outputs

    l3 = common.parse_point(args.l3, "--l3", "0,-20,35")
    options = common.start_measurement(args, TissueOptions)
    volume, calibration = common.ct_and_calibration(args)
    result = analyze_tissue(volume, calibration, options, l3_point_ras_mm=l3)
    paths = write_output_set(args.out, "tissue", lambda folder: write_tissue_outputs(
        folder, result, volume.metadata, args.anonymize, volume))
    image = result.regions["image"]
    for tissue in ("fat", "muscle", "skin", "cortical_mineral", "cancellous_mineral"):
        f = image[tissue]
        print(f"{tissue}: {f['mass_g']:.1f} g, {f['area_cm2']:.1f} cm2, {f['volume_cm3']:.1f} cm3")
    if result.skeletal_muscle_l3:
        print(f"skeletal muscle area at L3: {result.skeletal_muscle_l3['area_cm2']:.1f} cm2")
    common.print_done(result, paths)
    return 0
