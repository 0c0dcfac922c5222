"""Spine QCT end to end: ROIs at each level, per-level BMD, the diagnostic mean, category,
cement flags and reference scores.

``analyze_spine`` takes a CT in HU, a calibration (or None for HU only) and either seed points
(one per level, RAS mm) or a vertebra label map, and returns a :class:`SpineResult` whose
``to_dict`` is the ``spine.json`` schema documented in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import partial

import numpy as np

from boneqct.calibration.fit import Calibration
from boneqct.errors import SpineError
from boneqct.options import options_to_dict
from boneqct.progress import track
from boneqct.reference import Reference, scores
from boneqct.spine.body import body_from_label, delineate_body_from_seed
from boneqct.spine.fracture import FractureOptions, assess_fractures, fracture_note
from boneqct.spine.interpret import (
    CEMENT_NOTE,
    acr_category,
    cement_augmentation,
    spine_basis,
)
from boneqct.spine.label_input import check_labels_match_ct
from boneqct.spine.levels import LEVEL_NAMES, VFA_LEVEL_NAMES, label_schemes
from boneqct.spine.measure import roi_statistics
from boneqct.spine.options import SpineOptions
from boneqct.spine.roi import place_roi
from boneqct.spine.types import VertebralBody, VertebralROI
from boneqct.volume import Volume

#: Voxel edges (mm): above the first a warning (partial volume across thick slices), above
#: the second the scan is refused (a 9 mm ROI slab would hold one slice or none).
WARN_VOXEL_MM = 3.01
MAX_VOXEL_MM = 5.01
#: ISCD: a spine QCT diagnosis rests on at least two evaluable vertebrae (docs/domain.md section 3).
MIN_DIAGNOSTIC_LEVELS = 2
#: The site of spine QCT in reference files (``boneqct.reference.SITE_MEASURES``).
REFERENCE_SITE = "lumbar-spine-trabecular"


@dataclass
class LevelResult:
    """Measurement of one vertebral level (BMD in mg/cm3 of the calibration's material).

    A level that could not be measured has ``measured`` False, its ``reason``, and None in
    every measured field.
    """

    level: str
    measured: bool = True
    reason: str | None = None
    bmd_mg_cm3: float | None = None
    sd_mg_cm3: float | None = None
    median_mg_cm3: float | None = None
    mean_hu: float | None = None
    sd_hu: float | None = None
    median_hu: float | None = None
    n_voxels: int | None = None
    roi_volume_mm3: float | None = None
    roi_center_ras_mm: list[float] | None = None
    roi_axis_ras: list[float] | None = None
    #: unit vector perpendicular to the ROI axis, towards the patient's anterior (for views)
    roi_anterior_ras: list[float] | None = None
    roi_semi_axes_mm: list[float] | None = None
    roi_thickness_mm: float | None = None
    cement_augmentation: bool | None = None
    qc: dict | None = None
    excluded: bool = False
    #: vertebral fracture assessment (``boneqct.spine.fracture.grade_levels``)
    fracture: dict | None = None

    @property
    def usable(self) -> bool:
        """Measured, its ROI passed every quality check, and not excluded by the user."""
        return self.measured and bool(self.qc and self.qc["passed"]) and not self.excluded


@dataclass
class SpineResult:
    """All levels of one exam, with the diagnostic summary.

    ``rois`` and ``bodies`` hold one entry per measured level, in the order of ``levels``.
    """

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
    #: what the values are and whether they are categorised (``InterpretationBasis.to_dict``)
    interpretation: dict | None = None
    #: the options measured with (``boneqct.options.options_to_dict`` of ``SpineOptions``)
    options: dict | None = None
    rois: list[VertebralROI] = field(default_factory=list, repr=False)
    bodies: list[VertebralBody] = field(default_factory=list, repr=False)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def measured_levels(self) -> list[LevelResult]:
        """The levels that were measured (aligned with ``rois`` and ``bodies``)."""
        return [lv for lv in self.levels if lv.measured]

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
            "cement_note": CEMENT_NOTE if (self.interpretation or {}).get("diagnostic") else None,
            "interpretation": self.interpretation,
            "reference": self.reference,
            "warnings": self.warnings,
            "options": self.options,
        }
        if self.t_score is not None:
            out["t_score"] = self.t_score
        if self.z_score is not None:
            out["z_score"] = self.z_score
        return out

    @classmethod
    def from_dict(cls, document: dict) -> SpineResult:
        """The result a ``spine.json`` document (``to_dict``) describes, without the ROI masks
        and body delineations (``rois``, ``bodies``: the ROI label map holds the masks)."""
        calibration = document.get("calibration")
        level_keys = {f.name for f in fields(LevelResult)}
        return cls(
            calibration=None if calibration is None else Calibration.from_dict(calibration),
            levels=[LevelResult(**{k: v for k, v in lv.items() if k in level_keys})
                    for lv in document["levels"]],
            **{key: document.get(key) for key in (
                "levels_used", "mean_bmd_mg_cm3", "mean_hu", "category", "t_score", "z_score",
                "reference", "cement_threshold_mg_cm3", "interpretation", "options")},
            warnings=list(document.get("warnings") or []))


#: Least rise (mm) from one vertebral body's centre to the next cranial one: adult lumbar levels
#: lie about 35 mm apart (body plus disc); 10 mm catches swapped or doubled levels and still
#: admits small spines (a project choice, not a literature value).
MIN_LEVEL_STEP_MM = 10.0


def analyze_spine(volume_hu: Volume, calibration=None, options: SpineOptions | None = None, *,
                  seeds: dict | None = None, labels: Volume | None = None,
                  reference: Reference | None = None, age_years: float | None = None,
                  sex: str | None = None,
                  fracture_options: FractureOptions | None = None,
                  fracture_neighbours: dict | None = None) -> SpineResult:
    """Measure every level given by ``seeds`` (level -> RAS mm) or present in ``labels``.

    A level that cannot be measured (seed off the body, body cut by the scan, too little
    trabecular bone) is kept as not measured with its reason and the others go on; only when
    no level at all is measured is SpineError raised.

    The diagnostic mean uses the levels of ``options.levels_used`` whose ROI passed QC and that are not
    excluded; an unusable one is replaced by the nearest usable measured level (e.g. T12 or L3
    for L1 or L2), with a warning. With fewer than ``MIN_DIAGNOSTIC_LEVELS`` usable levels no
    category is given, and the warnings say why.

    Args:
        volume_hu: CT in HU.
        calibration: ``boneqct.calibration.Calibration``, or None to measure HU only
            (no BMD, no category, no cement flag).
        seeds: level name -> seed point (RAS mm) inside the vertebral body.
        options: levels used and excluded, ROI shape, cement threshold, label numbering
            (``boneqct.spine.options.SpineOptions``; None: the defaults).
        labels: vertebra label map (any grid covering the CT) in ``options.label_scheme``
            numbering.
        reference, age_years, sex: for T/Z-scores (absent without a reference); the
            reference must be for lumbar-spine-trabecular vBMD in the calibration's material.
        fracture_options: the vertebral fracture assessment of every measured level
            (``boneqct.spine.fracture``); a level graded at or above
            ``exclude_from_grade`` leaves the diagnostic mean, a lower grade is flagged.
        fracture_neighbours: heights of levels measured beside the spine's (level ->
            ``boneqct.spine.fracture.measure_heights``, e.g. T10 from
            ``boneqct.spine.vfa.measure_thoracic_levels``): T11's crush ratio sees T10.

    Category, cement flag and scores are given only when the calibration allows them
    (``boneqct.spine.interpret.spine_basis``); ``SpineResult.interpretation`` says what the
    values are and why not.

    Raises:
        ReferenceMismatchError: the reference is for another site, measure or material.
    """
    options = options or SpineOptions()
    if (seeds is None) == (labels is None):
        raise SpineError("Give either seed points (one per level) or a vertebra label map.")
    if reference is not None:
        reference.check_applies(REFERENCE_SITE, None if calibration is None else "bmd_mg_cm3",
                                None if calibration is None else calibration.material)
    basis = spine_basis(calibration)
    warnings: list[str] = []
    coarsest_mm = float(volume_hu.spacing_mm.max())
    if coarsest_mm > MAX_VOXEL_MM:
        raise SpineError(f"The CT's voxels are {coarsest_mm:.1f} mm along one axis; spine QCT "
                         f"needs voxels of at most {MAX_VOXEL_MM:.0f} mm (slices of 0.5-3 mm are "
                         "best). Reconstruct the scan with thinner slices.")
    if coarsest_mm > WARN_VOXEL_MM:
        warnings.append(f"Voxels of {coarsest_mm:.1f} mm along one axis: partial volume across "
                        "thick slices makes the ROI smaller and the values less precise; "
                        "thinner slices (0.5-3 mm) are recommended.")
    finders = body_finders(volume_hu, seeds=seeds, labels=labels, scheme=options.label_scheme)
    if calibration is None:
        warnings.append("Uncalibrated: values are HU only; no BMD, category or cement flag.")
    else:
        warnings += basis.warnings()
    cement_threshold = options.cement_threshold_mg_cm3 if basis.diagnostic else None
    levels, rois, bodies = [], [], []
    for level in track(sorted(finders, key=LEVEL_NAMES.index), "spine: levels measured"):
        try:
            body = finders[level]()
            roi = place_roi(volume_hu, body, thickness_mm=options.roi_thickness_mm,
                            margin_mm=options.margin_mm, kind=options.roi_kind)
        except SpineError as exc:
            reason = str(exc)
            levels.append(LevelResult(level=level, measured=False, reason=reason,
                                      excluded=level in options.exclude))
            warnings.append(f"{level} not measured: {reason.removeprefix(level + ': ')}")
            continue
        levels.append(_level_result(volume_hu, body, roi, calibration, cement_threshold,
                                    excluded=level in options.exclude))
        rois.append(roi)
        bodies.append(body)
        warnings += [w if w.startswith(level) else f"{level}: {w}"
                     for w in body.warnings + roi.warnings]
        if not levels[-1].qc["passed"]:
            warnings.append(f"{level}: ROI quality check failed ({_qc_failures(levels[-1])});"
                            " this level is left out of the diagnosis and has no cement flag.")
    check_level_order(bodies)
    warnings += _assess_fractures(volume_hu, levels, bodies, fracture_options or FractureOptions(),
                                  fracture_neighbours)
    if not rois:
        raise SpineError("No level could be measured: " + " ".join(
            f"{lv.level}: {lv.reason.removeprefix(lv.level + ': ')}" for lv in levels))
    used, diagnosis_warnings = _diagnostic_levels(levels, options.levels_used)
    warnings += diagnosis_warnings
    mean_bmd = _mean([lv.bmd_mg_cm3 for lv in used]) if calibration is not None else None
    category = None
    if basis.diagnostic and mean_bmd is not None and len(used) >= MIN_DIAGNOSTIC_LEVELS:
        category = acr_category(mean_bmd)
    result = SpineResult(
        calibration=calibration, levels=levels, levels_used=[lv.level for lv in used],
        mean_bmd_mg_cm3=mean_bmd, mean_hu=_mean([lv.mean_hu for lv in used]),
        category=category, t_score=None, z_score=None, reference=None,
        cement_threshold_mg_cm3=options.cement_threshold_mg_cm3, warnings=warnings, rois=rois,
        bodies=bodies, interpretation=basis.to_dict(), options=options_to_dict(options),
    )
    if category is not None:
        s = scores(reference, mean_bmd, sex, age_years)
        result.t_score, result.z_score = s.get("t_score"), s.get("z_score")
        result.reference = {"used": s.get("reference"), "why_absent": s["why"],
                            "curve": None if reference is None or sex not in ("F", "M")
                            else reference.curve(sex), "age_years": age_years, "sex": sex}
    return result


def _assess_fractures(volume_hu: Volume, levels: list[LevelResult], bodies: list[VertebralBody],
                      options: FractureOptions, neighbours: dict | None) -> list[str]:
    """Grade each measured level's deformity (against ``neighbours`` too: level -> heights
    measured beside the spine's) into ``LevelResult.fracture``; a level graded at or above
    ``options.exclude_from_grade`` is excluded from the diagnostic mean. The notes for the
    warnings."""
    fractures = assess_fractures(volume_hu, bodies, options, neighbours)
    notes = []
    for level in levels:
        if level.level not in fractures:
            continue
        fracture = level.fracture = fractures[level.level]
        if (fracture["genant_grade"] or 0) >= options.exclude_from_grade:
            fracture["excluded_from_mean"] = True
            level.excluded = True
        note = fracture_note(level.level, fracture, options.exclude_from_grade)
        if note:
            notes.append(note)
    return notes


def check_level_order(bodies: list[VertebralBody]) -> None:
    """Refuse levels out of anatomical order: each measured body must lie at least
    MIN_LEVEL_STEP_MM per level above the next caudal one along the spine's axis (swapped seed
    labels, two seeds in one vertebra, a label map numbered upside down)."""
    for upper, lower in zip(bodies, bodies[1:], strict=False):
        axis = upper.axis_ras + lower.axis_ras
        rise_mm = float(np.dot(upper.center_ras_mm - lower.center_ras_mm, axis / np.linalg.norm(axis)))
        steps = VFA_LEVEL_NAMES.index(lower.level) - VFA_LEVEL_NAMES.index(upper.level)
        if rise_mm < MIN_LEVEL_STEP_MM * steps:
            where = "below" if rise_mm < -1.0 else f"only {max(rise_mm, 0.0):.0f} mm above"
            raise SpineError(f"{upper.level} lies {where} {lower.level}: the levels are out of "
                             "anatomical order (swapped seed labels, two seeds in one vertebra, "
                             "or a mis-numbered label map). Check the level names of the seeds or "
                             "labels.")


def _level_result(volume_hu: Volume, body: VertebralBody, roi: VertebralROI, calibration,
                  cement_threshold_mg_cm3: float | None, excluded: bool) -> LevelResult:
    """The measurement of one level; the cement flag only where the ROI passed QC and a
    threshold is given (None: the calibration does not allow the flag)."""
    stats = roi_statistics(volume_hu, roi, body, calibration)
    bmd = stats["bmd_mg_cm3"]
    flag = None
    if bmd is not None and stats["qc"]["passed"] and cement_threshold_mg_cm3 is not None:
        flag = cement_augmentation(bmd, cement_threshold_mg_cm3)
    return LevelResult(
        level=body.level, bmd_mg_cm3=bmd, sd_mg_cm3=stats["sd_mg_cm3"],
        median_mg_cm3=stats["median_mg_cm3"], mean_hu=stats["mean_hu"], sd_hu=stats["sd_hu"],
        median_hu=stats["median_hu"], n_voxels=stats["n_voxels"],
        roi_volume_mm3=stats["roi_volume_mm3"],
        roi_center_ras_mm=[float(v) for v in roi.center_ras_mm],
        roi_axis_ras=[float(v) for v in roi.axis_ras],
        roi_anterior_ras=[float(v) for v in body.anterior_ras],
        roi_semi_axes_mm=None if roi.semi_axes_mm is None else [float(v) for v in roi.semi_axes_mm],
        roi_thickness_mm=roi.thickness_mm, cement_augmentation=flag, qc=stats["qc"],
        excluded=excluded)


def _diagnostic_levels(levels: list[LevelResult],
                       wanted: tuple[str, ...]) -> tuple[list[LevelResult], list[str]]:
    """The usable levels of the diagnostic set, each unusable one replaced by the nearest
    usable level not already in the set (cranial first on a tie), and the warnings saying so."""
    by_name = {lv.level: lv for lv in levels}
    chosen: list[LevelResult] = []
    warnings: list[str] = []
    for name in wanted:
        level = by_name.get(name)
        if level is not None and level.usable:
            chosen.append(level)
            continue
        why = ("not measured" if level is None or not level.measured else
               "excluded" if level.excluded else "left out (its ROI failed QC)")
        spare = sorted((lv for lv in levels if lv.usable and lv.level not in wanted
                        and lv not in chosen),
                       key=lambda lv: abs(LEVEL_NAMES.index(lv.level) - LEVEL_NAMES.index(name)))
        if spare:
            chosen.append(spare[0])
            warnings.append(f"{name} is {why}: the diagnostic mean uses {spare[0].level}, the "
                            "nearest usable level, instead.")
        else:
            warnings.append(f"{name} is {why} and no other usable level can replace it.")
    chosen.sort(key=lambda lv: LEVEL_NAMES.index(lv.level))
    if len(chosen) < MIN_DIAGNOSTIC_LEVELS:
        warnings.append(f"Only {len(chosen)} usable level(s) for the diagnostic mean; a spine "
                        f"QCT diagnosis needs at least {MIN_DIAGNOSTIC_LEVELS}: no category is "
                        "given. Measure more levels (--levels, seeds or labels).")
    return chosen, warnings


def roi_label_map(volume_hu: Volume, result: SpineResult) -> Volume:
    """The ROIs as a uint8 label map on the CT grid: label n+1 for the n-th measured level."""
    labels = np.zeros(volume_hu.array_kji.shape, np.uint8)
    for n, roi in enumerate(result.rois):
        labels[roi.mask_kji] = n + 1
    out = volume_hu.with_array(labels)
    out.metadata = {"labels": {n + 1: lv.level for n, lv in enumerate(result.measured_levels)}}
    return out


def body_finders(volume_hu: Volume, *, seeds: dict | None = None, labels: Volume | None = None,
                 scheme: str = "totalsegmentator", levels: tuple[str, ...] = LEVEL_NAMES) -> dict:
    """level -> a function delineating its body, from seeds (level -> RAS mm) or from every
    level of ``levels`` present in a vertebra label map numbered in ``scheme``."""
    if seeds is None:
        return _label_finders(volume_hu, labels, scheme, label_schemes(levels))
    if not seeds:
        raise SpineError("No seed points were given; give one per level "
                         "(e.g. --seed L1=R,A,S).")
    return {level: partial(delineate_body_from_seed, volume_hu, np.asarray(p, float), level)
            for level, p in seeds.items()}


def _label_finders(volume_hu: Volume, labels: Volume, scheme: str, schemes: dict) -> dict:
    """level -> a function delineating its body from the label map, for every level of the
    label ``schemes`` present."""
    if scheme not in schemes:
        raise SpineError(f"Unknown label scheme '{scheme}'; use one of {', '.join(schemes)}.")
    present = set(np.unique(labels.array_kji).tolist())
    found = {level: value for value, level in schemes[scheme].items() if value in present}
    if not found:
        raise SpineError(
            f"The label map holds no vertebra of levels {', '.join(schemes[scheme].values())} "
            f"in {scheme} numbering (expected labels {sorted(schemes[scheme])}). Check "
            "--label-scheme."
        )
    check_labels_match_ct(volume_hu, labels, found.values())
    return {level: partial(body_from_label, volume_hu, labels, value, level)
            for level, value in found.items()}


def _qc_failures(level: LevelResult) -> str:
    qc = level.qc
    names = {"inside_body": "ROI not inside the body", "enough_voxels": "too few voxels",
             "low_cortical_fraction": "cortical-like voxels in the ROI",
             "plausible_bmd": "BMD far below zero: the calibration does not fit this scan",
             "acceptable_noise": f"noise beyond what the mean can bear (SD {level.sd_hu or 0:.0f} "
                                 f"HU, standard error {qc.get('mean_standard_error_hu') or 0:.1f} HU)"}
    return ", ".join(text for key, text in names.items() if not qc.get(key, True))


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
