"""tissue.json, tissue.csv and a one-page report, written atomically."""

from __future__ import annotations

from pathlib import Path

from boneqct.io.atomic import write_json_atomic, write_text_atomic
from boneqct.tissue.composition import TISSUES
from boneqct.tissue.result import TissueResult


def tissue_rows(result: TissueResult) -> list[list]:
    """CSV rows: header, then region, tissue, mass_g, area_cm2, volume_cm3."""
    rows = [["region", "tissue", "mass_g", "area_cm2", "volume_cm3"]]
    for region, fields in result.regions.items():
        rows += [[region, t, fields[t]["mass_g"], fields[t]["area_cm2"], fields[t]["volume_cm3"]]
                 for t in TISSUES]
    rows += [["image", name, v["mass_g"], v["area_cm2"], v["volume_cm3"]]
             for name, v in result.fat_compartments.items()]
    return rows


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def write_tissue_outputs(out_dir: str | Path, result: TissueResult, metadata: dict | None = None,
                         anonymize: bool = False) -> dict[str, Path]:
    """Write tissue.json, tissue.csv and tissue_report.pdf into ``out_dir``.

    The report draws no image, so a stored result (``TissueResult.from_dict``) and the exam
    ``metadata`` (the CT's, for the exam table; None leaves it empty) are enough."""
    from reportlab.platypus import Paragraph, Spacer

    from boneqct.report.pdf import STYLES, exam_table, table, warnings_box, write_report

    out_dir = Path(out_dir)
    metadata = metadata or {}
    paths = {"json": write_json_atomic(out_dir / "tissue.json", result.to_dict())}
    rows = tissue_rows(result)
    paths["csv"] = write_text_atomic(out_dir / "tissue.csv", "\n".join(
        ",".join(str(v) if not isinstance(v, float) else f"{v:.4f}" for v in row)
        for row in rows) + "\n")
    ref = result.reference
    cal = ref["calibration"]
    reference_rows = [
        ["Calibration", f"{cal['method']}, {cal['material']}: slope "
                        f"{cal['slope_hu_per_mg_cm3']:.4f} HU per mg/cm3, intercept "
                        f"{cal['intercept_hu']:.2f} HU"],
        ["Fat / muscle density", f"{ref['fat_density_g_cm3']} / {ref['muscle_density_g_cm3']} g/cm3"],
        ["Fat / muscle CT value (calibration)", f"{ref['fat_hu']:.1f} / {ref['muscle_hu']:.1f} HU"],
        ["Fat / muscle CT value (measured)",
         f"{_fmt(ref['fat_hu_measured'], '.1f')} / {_fmt(ref['muscle_hu_measured'], '.1f')} HU"],
        ["Thresholds", f"air {ref['air_threshold_hu']:g} HU; fat/muscle "
                       f"{ref['fat_muscle_threshold_hu']:.1f} HU; muscle <= "
                       f"{ref['muscle_upper_hu']:g} HU; cortical {ref['cortical_threshold_mg_cm3']:g} "
                       f"mg/cm3 ({ref['cortical_threshold_hu']:.0f} HU); cancellous: enclosed by cortex"],
        ["Extent", f"slices {result.extent['k_first']}-{result.extent['k_stop'] - 1} "
                   f"({result.extent['slab_thickness_mm']:.1f} mm)"],
    ]
    tissue_table = [["Region", "Tissue", "Mass g", "Area cm2", "Volume cm3"]] + [
        [r[0], r[1].replace("_", " "), f"{r[2]:.2f}", f"{r[3]:.2f}", f"{r[4]:.2f}"]
        for r in rows[1:]]
    summary = [["Region", "Cortical mg/cm3", "Cancellous mg/cm3", "Integral mg/cm3",
                "Fat/lean vol", "Fat/lean mass", "Bone/muscle vol", "Bone/muscle mass"]]
    for region, f in result.regions.items():
        summary.append([region] + [_fmt(f[k], ".1f") for k in (
            "cortical_bmd_mg_cm3", "cancellous_bmd_mg_cm3", "integral_bmd_mg_cm3")] + [
            _fmt(f[k], ".3f") for k in ("fat_lean_ratio_volume", "fat_lean_ratio_mass",
                                        "bone_muscle_ratio_volume", "bone_muscle_ratio_mass")])
    sma = result.skeletal_muscle_l3
    notes = ("Muscle is all lean soft tissue (two-compartment model); mineral masses are in "
             f"g of {cal['material']}; areas of a slab are mean areas per slice.")
    if sma is not None:
        notes += (f" Skeletal muscle area at L3 (slice {sma['k']}, {sma['window_hu'][0]:g} to "
                  f"{sma['window_hu'][1]:g} HU, {sma['mask']}): {sma['area_cm2']:.1f} cm2.")
    paths["report"] = write_report(out_dir / "tissue_report.pdf", "Tissue analysis", [
        exam_table(metadata, anonymize), *warnings_box(result.warnings), Spacer(1, 4),
        table(reference_rows, [55, 125]),
        Spacer(1, 4), table(tissue_table, [20, 40, 30, 30, 30]), Spacer(1, 4),
        table(summary, [16, 24, 24, 22, 20, 20, 24, 24]), Spacer(1, 4),
        Paragraph(notes, STYLES["BodyText"])])
    return paths
