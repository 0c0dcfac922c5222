"""The DICOM outputs of an analysis, written into its output set's folder (``dicom/``): the
SR, the SEG (when the analysis has segments) and the report as Encapsulated PDF, each
atomically; the CLI writes them inside ``boneqct.io.atomic.write_output_set`` with the other
files, so the set stays one unit."""

from __future__ import annotations

import json
from pathlib import Path

from boneqct.dicom.anonymize import mark_deidentified
from boneqct.dicom.encapsulated_pdf import encapsulated_pdf
from boneqct.dicom.seg import segmentation
from boneqct.dicom.segments import SEGMENTS
from boneqct.dicom.source import DicomSource
from boneqct.dicom.sr import measurement_report
from boneqct.io.atomic import atomic_path
from boneqct.volume import Volume

#: Folder of the DICOM files inside the output folder (import it in Slicer's DICOM module).
DICOM_FOLDER = "dicom"
#: Character set of every output (UTF-8): text taken from the source is decoded on reading.
CHARACTER_SET = "ISO_IR 192"
TITLES = {"spine": "BoneQCT spine QCT report", "hip": "BoneQCT hip CTXA report",
          "fe": "BoneQCT vertebral FE report", "screw": "BoneQCT screw trajectory report"}


def write_dicom_outputs(out_dir: str | Path, kind: str, paths: dict[str, Path],
                        source: DicomSource, volume: Volume, result) -> dict[str, Path]:
    """Write ``<kind>_sr.dcm``, ``<kind>_seg.dcm`` (when there are segments) and
    ``<kind>_report.dcm`` into ``out_dir``/``DICOM_FOLDER`` from the set's JSON
    (``paths["json"]``) and report (``paths["report"]``), on ``source``'s slices (the grid of
    ``volume``, which ``result`` was measured on); return their paths by key ("dicom_sr",
    "dicom_seg", "dicom_pdf")."""
    folder = Path(out_dir) / DICOM_FOLDER
    document = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    segments = SEGMENTS[kind](volume, result)
    seg = segmentation(source, segments, f"BoneQCT {kind} regions")
    numbers = {s.label: n + 1 for n, s in enumerate(segments)} if seg is not None else {}
    datasets = {
        "dicom_sr": measurement_report(kind, document, source, seg, numbers),
        "dicom_seg": seg,
        "dicom_pdf": encapsulated_pdf(Path(paths["report"]).read_bytes(), TITLES[kind], source,
                                      shows_identity=not source.anonymized)}
    names = {"dicom_sr": f"{kind}_sr.dcm", "dicom_seg": f"{kind}_seg.dcm",
             "dicom_pdf": f"{kind}_report.dcm"}
    written = {}
    for key, ds in datasets.items():
        if ds is None:
            continue
        if source.anonymized:
            mark_deidentified(ds)
        ds.SpecificCharacterSet = CHARACTER_SET  # names as typed (e.g. a screw's), in UTF-8
        with atomic_path(folder / names[key]) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written[key] = folder / names[key]
    return written
