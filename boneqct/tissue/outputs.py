"""tissue.json, tissue.csv and the one-page report (``tissue.report``), written atomically."""

from __future__ import annotations

from pathlib import Path

from boneqct.io.atomic import write_json_atomic, write_text_atomic
from boneqct.tissue.composition import TISSUES
from boneqct.tissue.result import TissueResult
from boneqct.volume import Volume


def tissue_rows(result: TissueResult) -> list[list]:
    """CSV rows: header, then region, tissue, mass_g, area_cm2, volume_cm3."""
    rows = [["region", "tissue", "mass_g", "area_cm2", "volume_cm3"]]
    for region, fields in result.regions.items():
        rows += [[region, t, fields[t]["mass_g"], fields[t]["area_cm2"], fields[t]["volume_cm3"]]
                 for t in TISSUES]
    rows += [["image", name, v["mass_g"], v["area_cm2"], v["volume_cm3"]]
             for name, v in result.fat_compartments.items()]
    return rows


def write_tissue_outputs(out_dir: str | Path, result: TissueResult, metadata: dict | None = None,
                         anonymize: bool = False, volume_hu: Volume | None = None
                         ) -> dict[str, Path]:
    """Write tissue.json, tissue.csv and tissue_report.pdf into ``out_dir``.

    A stored result (``TissueResult.from_dict``) and the exam ``metadata`` (the CT's, for the
    exam table; None leaves it empty) are enough; with the CT ``volume_hu`` and a live result,
    the report also shows the fat compartments on an axial slice."""
    from boneqct.tissue.report import write_tissue_report

    out_dir = Path(out_dir)
    paths = {"json": write_json_atomic(out_dir / "tissue.json", result.to_dict())}
    rows = tissue_rows(result)
    paths["csv"] = write_text_atomic(out_dir / "tissue.csv", "\n".join(
        ",".join(str(v) if not isinstance(v, float) else f"{v:.4f}" for v in row)
        for row in rows) + "\n")
    paths["report"] = write_tissue_report(out_dir / "tissue_report.pdf", result, rows,
                                          metadata or {}, anonymize, volume_hu)
    return paths
