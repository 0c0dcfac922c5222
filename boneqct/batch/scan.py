"""A manifest written from a folder tree of CT studies: one row per study, the series chosen by
documented rules, every candidate listed with the reason it was or was not taken.

Rules, in order (docs/batch.md):

1. a CT image series (Modality CT), not a localizer (ImageType LOCALIZER), of at least
   ``MIN_IMAGES`` images;
2. axial: the slice normal within about 25 degrees of the patient's head-foot axis (the
   orientation rule of ``boneqct.io.dicom``, which keeps gantry-tilted series);
3. enough coverage: slice centres spanning at least ``min_coverage_mm`` along the normal;
4. among the series left: a soft-tissue kernel before an unknown one before a sharp (bone,
   lung) one, as the trabecular density of QCT is measured on soft-tissue reconstructions
   (sharp kernels add noise and edge overshoot); then the thinnest slices; then the longest
   coverage; then the most images; then the SeriesInstanceUID (so the choice is repeatable).

The case id is ``study_`` and the first 10 hex digits of the SHA-256 of the
StudyInstanceUID: stable when the tree grows, and free of patient identity.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.multival import MultiValue

from boneqct.errors import InputError
from boneqct.io.atomic import write_text_atomic

#: Fewest images of a series taken as a volume.
MIN_IMAGES = 10
#: Default coverage asked for (mm of slice-centre span): two lumbar vertebrae with their discs,
#: the fewest levels a spine QCT diagnosis uses (a lumbar body with its disc is about 35 mm
#: tall in adults; approximate anatomy, not checked against a primary source).
DEFAULT_MIN_COVERAGE_MM = 70.0
#: Convolution kernels of soft-tissue reconstructions (GE STANDARD/SOFT, Siemens B/Br/I/Q 10-49,
#: Canon FC01-FC18, Philips A/B/C); and of sharp ones (bone, lung, edge, detail; Siemens 50+).
#: Vendor naming habits, not an exhaustive list: other names are "unknown".
SOFT_KERNEL = re.compile(r"SOFT|STANDARD|STND|BODY|^(B|BR|BF|I|IR|Q|QR|BV)[1-4]\d|^FC(0\d|1[0-8])$"
                         r"|^[ABC]$", re.I)
SHARP_KERNEL = re.compile(r"BONE|LUNG|SHARP|EDGE|DETAIL|HIGH|^(B|BR|BF|I|IR|Q|QR|BV|H|HR)[5-9]\d"
                          r"|^[DEL]$|^Y", re.I)
KERNEL_RANK = {"soft": 0, "unknown": 1, "sharp": 2}


@dataclass
class Candidate:
    """One CT series found under the scanned folder."""

    study_uid: str
    series_uid: str
    folder: Path
    n_images: int
    orientation: str
    slice_thickness_mm: float | None
    coverage_mm: float | None
    kernel: str
    localizer: bool
    modality: str
    chosen: bool = False
    reason: str = ""

    @property
    def kernel_class(self) -> str:
        """``soft``, ``sharp`` or ``unknown``."""
        if SOFT_KERNEL.search(self.kernel):
            return "soft"
        return "sharp" if SHARP_KERNEL.search(self.kernel) else "unknown"

    @property
    def case_id(self) -> str:
        return "study_" + hashlib.sha256(self.study_uid.encode()).hexdigest()[:10]


def _number(ds, keyword: str) -> float | None:
    try:
        value = float(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _coverage_mm(datasets) -> float | None:
    """Span of the slice centres along the slice normal, mm (None without geometry)."""
    try:
        iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient], float)
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    except (AttributeError, TypeError, ValueError):
        return None
    along = positions @ np.cross(iop[:3], iop[3:])
    return float(np.ptp(along)) if np.all(np.isfinite(along)) else None


def find_candidates(folder: str | Path) -> list[Candidate]:
    """Every image series under ``folder`` (headers only, pixels not read)."""
    from boneqct.io.dicom import find_series

    candidates = []
    for series in find_series(folder):
        first = series.datasets[0]
        files = [ds.filename for ds in series.datasets if isinstance(ds.filename, str)]
        thickness = _number(first, "SliceThickness")
        kernel = first.get("ConvolutionKernel", "")
        candidates.append(Candidate(
            study_uid=str(first.get("StudyInstanceUID", "unknown")),
            series_uid=series.series_uid,
            folder=Path(os.path.commonpath([str(Path(f).parent) for f in files])),
            n_images=series.n_slices, orientation=series.orientation,
            slice_thickness_mm=thickness, coverage_mm=_coverage_mm(series.datasets),
            kernel="\\".join(map(str, kernel)) if isinstance(kernel, MultiValue) else str(kernel),
            localizer="LOCALIZER" in [str(v).upper() for v in first.get("ImageType", [])],
            modality=series.modality))
    return candidates


def _refusal(c: Candidate, min_coverage_mm: float) -> str:
    """Why a series cannot be a case's CT (rules 1-3), or '' when it can."""
    if c.modality != "CT" or c.localizer:
        return "not a CT image series (localizer or other modality)"
    if c.n_images < MIN_IMAGES:
        return f"{c.n_images} images, fewer than {MIN_IMAGES}"
    if c.orientation != "axial":
        return f"not axial ({c.orientation})"
    if c.coverage_mm is None or c.coverage_mm < min_coverage_mm:
        shown = "unknown" if c.coverage_mm is None else f"{c.coverage_mm:.0f} mm"
        return f"coverage {shown}, below {min_coverage_mm:g} mm"
    return ""


def choose_series(candidates: list[Candidate], min_coverage_mm: float) -> list[Candidate]:
    """Mark the chosen series of each study (``chosen``, ``reason`` on every candidate);
    returns the chosen ones, by case id."""
    chosen = []
    studies: dict[str, list[Candidate]] = {}
    for c in candidates:
        studies.setdefault(c.study_uid, []).append(c)
    for members in studies.values():
        eligible = []
        for c in members:
            c.reason = _refusal(c, min_coverage_mm)
            if not c.reason:
                eligible.append(c)
        eligible.sort(key=lambda c: (KERNEL_RANK[c.kernel_class],
                                     c.slice_thickness_mm if c.slice_thickness_mm else np.inf,
                                     -c.coverage_mm, -c.n_images, c.series_uid))
        for rank, c in enumerate(eligible):
            c.chosen = rank == 0
            c.reason = ("chosen: " if rank == 0 else f"eligible, ranked {rank + 1}: ") + \
                f"{c.kernel_class} kernel, {c.slice_thickness_mm or 'unknown'} mm slices, " \
                f"{c.coverage_mm:.0f} mm coverage"
        if eligible:
            chosen.append(eligible[0])
    return sorted(chosen, key=lambda c: c.case_id)


#: Empty columns a scanned manifest gets for the user to fill, by analysis.
FILL_COLUMNS = {"spine": ("seeds", "labels"), "fe": ("level", "seeds", "labels"),
                "hip": ("side", "seed", "labels"), "tissue": (), "vfa": ("seeds", "labels")}
CANDIDATE_COLUMNS = ("case_id", "series_uid", "folder", "n_images", "orientation",
                     "slice_thickness_mm", "coverage_mm", "kernel", "kernel_class", "chosen",
                     "reason")


def scan_to_manifest(folder: str | Path, manifest: str | Path, analysis: str = "spine",
                     min_coverage_mm: float = DEFAULT_MIN_COVERAGE_MM) -> dict:
    """Write a manifest (one row per study with an eligible series) and, beside it,
    ``<manifest stem>_candidates.csv`` (every series, chosen or not, and why).

    Returns ``{"manifest": path, "candidates": path, "cases": n, "studies": n}``.

    Raises:
        InputError: the folder holds no DICOM image, or a DICOM file in it is damaged.
    """
    if analysis not in FILL_COLUMNS:
        raise InputError(f"--analysis {analysis} is not one of {', '.join(FILL_COLUMNS)}.")
    manifest = Path(manifest)
    if manifest.suffix.lower() != ".csv" or manifest.is_dir():
        raise InputError(f"'{manifest.name}' is not a .csv file name; give the manifest to write "
                         "with --out, e.g. --out manifest.csv.")
    candidates = find_candidates(folder)
    chosen = choose_series(candidates, min_coverage_mm)
    base = manifest.absolute().parent
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case_id", "analysis", "ct", "series", *FILL_COLUMNS[analysis]])
    for c in chosen:
        writer.writerow([c.case_id, analysis, os.path.relpath(c.folder.absolute(), base),
                         c.series_uid, *[""] * len(FILL_COLUMNS[analysis])])
    paths = {"manifest": write_text_atomic(manifest, text.getvalue())}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CANDIDATE_COLUMNS)
    for c in sorted(candidates, key=lambda c: (c.case_id, not c.chosen, c.series_uid)):
        writer.writerow([c.case_id, c.series_uid, os.path.relpath(c.folder.absolute(), base),
                         c.n_images, c.orientation, c.slice_thickness_mm or "",
                         "" if c.coverage_mm is None else f"{c.coverage_mm:.1f}", c.kernel,
                         c.kernel_class, "yes" if c.chosen else "no", c.reason])
    paths["candidates"] = write_text_atomic(
        manifest.with_name(f"{manifest.stem}_candidates.csv"), text.getvalue())
    return {**paths, "cases": len(chosen), "studies": len({c.study_uid for c in candidates})}
