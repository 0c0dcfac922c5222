"""Spine QCT end to end: ROIs at each level, per-level BMD, the diagnostic mean, category,
cement flags and reference scores.

``analyze_spine`` takes a CT in HU, a calibration (or None for HU only) and either seed points
(one per level, RAS mm) or a vertebra label map, and returns a :class:`SpineResult` whose
``to_dict`` is the ``spine.json`` schema documented in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boneqct.errors import SpineError
from boneqct.reference import Reference, scores
from boneqct.spine.body import body_from_label, delineate_body_from_seed
from boneqct.spine.interpret import CEMENT_THRESHOLD_MG_CM3, acr_category, cement_augmentation
from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES
from boneqct.spine.measure import roi_statistics
from boneqct.spine.roi import place_roi
from boneqct.spine.types import VertebralBody, VertebralROI
from boneqct.volume import Volume

#: ISCD 3D QCT: the diagnostic value is the mean of L1 and L2 (domain.md section 3).
DEFAULT_LEVELS_USED = ("L1", "L2")
#: Default ROI slab (mm): the seed's QCT PRO screen uses a 9 mm deep ROI (domain.md section 3).
DEFAULT_ROI_THICKNESS_MM = 9.0
DEFAULT_MARGIN_MM = 2.0


@dataclass
class LevelResult:
    """Measurement of one vertebral level (BMD in mg/cm3 of the calibration's material)."""

    level: str
    bmd_mg_cm3: float | None
    sd_mg_cm3: float | None
    median_mg_cm3: float | None
    mean_hu: float | None
    sd_hu: float | None
    median_hu: float | None
    n_voxels: int
    roi_volume_mm3: float
    roi_center_ras_mm: list[float]
    roi_axis_ras: list[float]
    roi_semi_axes_mm: list[float] | None
    roi_thickness_mm: float | None
    cement_augmentation: bool | None
    qc: dict
    excluded: bool = False


@dataclass
class SpineResult:
    """All levels of one exam, with the diagnostic summary."""

    calibration: object | None
    levels: list[LevelResult]
    levels_used: list[str]
    mean_bmd_mg_cm3: float | None
    mean_hu: float | None
    category: str | None
    t_score: float | None
    z_score: float | None
    reference: dict | None
    cement_threshold_mg_cm3: float
    warnings: list[str] = field(default_factory=list)
    rois: list[VertebralROI] = field(default_factory=list, repr=False)
    bodies: list[VertebralBody] = field(default_factory=list, repr=False)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict:
        """The ``spine.json`` document."""
        out = {
            "calibrated": self.calibrated,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "material": None if self.calibration is None else self.calibration.material,
            "levels": [vars(level).copy() for level in self.levels],
            "levels_used": self.levels_used,
            "mean_bmd_mg_cm3": self.mean_bmd_mg_cm3,
            "mean_hu": self.mean_hu,
            "category": self.category,
            "cement_threshold_mg_cm3": self.cement_threshold_mg_cm3,
            "reference": self.reference,
            "warnings": self.warnings,
        }
        if self.t_score is not None:
            out["t_score"] = self.t_score
        if self.z_score is not None:
            out["z_score"] = self.z_score
        return out


def analyze_spine(volume_hu: Volume, calibration=None, *, seeds: dict | None = None,
                  labels: Volume | None = None, label_scheme: str = "totalsegmentator",
                  levels_used=DEFAULT_LEVELS_USED, exclude=(),
                  roi_kind: str = "elliptic-cylinder",
                  thickness_mm: float = DEFAULT_ROI_THICKNESS_MM,
                  margin_mm: float = DEFAULT_MARGIN_MM,
                  cement_threshold_mg_cm3: float = CEMENT_THRESHOLD_MG_CM3,
                  reference: Reference | None = None, age_years: float | None = None,
                  sex: str | None = None) -> SpineResult:
    """Measure every level given by ``seeds`` (level -> RAS mm) or present in ``labels``.

    Args:
        volume_hu: CT in HU.
        calibration: ``boneqct.calibration.Calibration``, or None to measure HU only
            (no BMD, no category, no cement flag).
        seeds: level name -> seed point (RAS mm) inside the vertebral body.
        labels: vertebra label map (any grid) in ``label_scheme`` numbering.
        levels_used: levels averaged for the diagnostic value.
        exclude: levels left out of the diagnostic value (e.g. fractured).
        roi_kind, thickness_mm, margin_mm: ROI shape (see ``boneqct.spine.roi.place_roi``).
        cement_threshold_mg_cm3: BMD below which cement augmentation is suggested.
        reference, age_years, sex: for T/Z-scores (absent without a reference).
    """
    if (seeds is None) == (labels is None):
        raise SpineError("Give either seed points (one per level) or a vertebra label map.")
    warnings: list[str] = []
    bodies = _bodies_from_seeds(volume_hu, seeds) if seeds is not None else \
        _bodies_from_labels(volume_hu, labels, label_scheme, warnings)
    bodies.sort(key=lambda b: LEVEL_NAMES.index(b.level))
    if calibration is None:
        warnings.append("Uncalibrated: values are HU only; no BMD, category or cement flag.")
    levels, rois = [], []
    for body in bodies:
        roi = place_roi(volume_hu, body, thickness_mm=thickness_mm, margin_mm=margin_mm,
                        kind=roi_kind)
        stats = roi_statistics(volume_hu, roi, body, calibration)
        bmd = stats["bmd_mg_cm3"]
        levels.append(LevelResult(
            level=body.level, bmd_mg_cm3=bmd, sd_mg_cm3=stats["sd_mg_cm3"],
            median_mg_cm3=stats["median_mg_cm3"], mean_hu=stats["mean_hu"], sd_hu=stats["sd_hu"],
            median_hu=stats["median_hu"], n_voxels=stats["n_voxels"],
            roi_volume_mm3=stats["roi_volume_mm3"],
            roi_center_ras_mm=[float(v) for v in roi.center_ras_mm],
            roi_axis_ras=[float(v) for v in roi.axis_ras],
            roi_semi_axes_mm=None if roi.semi_axes_mm is None else [float(v) for v in roi.semi_axes_mm],
            roi_thickness_mm=roi.thickness_mm,
            cement_augmentation=None if bmd is None else cement_augmentation(bmd, cement_threshold_mg_cm3),
            qc=stats["qc"], excluded=body.level in exclude,
        ))
        rois.append(roi)
        warnings += [w if w.startswith(body.level) else f"{body.level}: {w}"
                     for w in body.warnings + roi.warnings]
        if not stats["qc"]["passed"]:
            warnings.append(f"{body.level}: ROI quality check failed ({_qc_failures(stats['qc'])}); "
                            "review the ROI before using this level.")
    used = [lv for lv in levels if lv.level in levels_used and not lv.excluded]
    missing = [name for name in levels_used if name not in {lv.level for lv in used}]
    if missing and used:
        warnings.append(f"Levels {', '.join(missing)} of the diagnostic set were not measured or "
                        "are excluded; the mean uses the others.")
    elif missing:
        warnings.append(f"No level of the diagnostic set ({', '.join(levels_used)}) was measured: "
                        "no mean value and no category. Choose the levels with --levels.")
    mean_bmd = _mean([lv.bmd_mg_cm3 for lv in used]) if calibration is not None else None
    result = SpineResult(
        calibration=calibration, levels=levels, levels_used=[lv.level for lv in used],
        mean_bmd_mg_cm3=mean_bmd, mean_hu=_mean([lv.mean_hu for lv in used]),
        category=None if mean_bmd is None else acr_category(mean_bmd), t_score=None,
        z_score=None, reference=None, cement_threshold_mg_cm3=cement_threshold_mg_cm3,
        warnings=warnings, rois=rois, bodies=bodies,
    )
    if mean_bmd is not None:
        s = scores(reference, mean_bmd, sex, age_years)
        result.t_score, result.z_score = s.get("t_score"), s.get("z_score")
        result.reference = {"used": s.get("reference"), "why_absent": s["why"],
                            "curve": None if reference is None or sex not in ("F", "M")
                            else reference.curve(sex), "age_years": age_years, "sex": sex}
    return result


def roi_label_map(volume_hu: Volume, result: SpineResult) -> Volume:
    """The ROIs as a uint8 label map on the CT grid: label n+1 for ``result.levels[n]``."""
    labels = np.zeros(volume_hu.array_kji.shape, np.uint8)
    for n, roi in enumerate(result.rois):
        labels[roi.mask_kji] = n + 1
    out = volume_hu.with_array(labels)
    out.metadata = {"labels": {n + 1: lv.level for n, lv in enumerate(result.levels)}}
    return out


def _bodies_from_seeds(volume_hu: Volume, seeds: dict) -> list[VertebralBody]:
    if not seeds:
        raise SpineError("No seed points were given; give one per level (e.g. --seed L1=R,A,S).")
    return [delineate_body_from_seed(volume_hu, np.asarray(p, float), level)
            for level, p in seeds.items()]


def _bodies_from_labels(volume_hu: Volume, labels: Volume, scheme: str,
                        warnings: list[str]) -> list[VertebralBody]:
    """Bodies of every labelled level; a level that cannot be measured (cut by the scan's end,
    too damaged) is skipped with a warning, as a label map often holds partial neighbours."""
    if scheme not in LABEL_SCHEMES:
        raise SpineError(f"Unknown label scheme '{scheme}'; use one of {', '.join(LABEL_SCHEMES)}.")
    present = set(np.unique(labels.array_kji).tolist())
    found = [(value, level) for value, level in LABEL_SCHEMES[scheme].items() if value in present]
    if not found:
        raise SpineError(
            f"The label map holds no lumbar or low thoracic vertebra in {scheme} numbering "
            f"(expected labels {sorted(LABEL_SCHEMES[scheme])}). Check --label-scheme."
        )
    bodies = []
    for value, level in found:
        try:
            bodies.append(body_from_label(volume_hu, labels, value, level))
        except SpineError as exc:
            warnings.append(f"{level} not measured: {exc}")
    if not bodies:
        raise SpineError("No labelled level could be measured: "
                         + " ".join(w for w in warnings if "not measured" in w))
    return bodies


def _qc_failures(qc: dict) -> str:
    names = {"inside_body": "ROI not inside the body", "enough_voxels": "too few voxels",
             "low_cortical_fraction": "cortical-like voxels in the ROI"}
    return ", ".join(text for key, text in names.items() if not qc[key])


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
