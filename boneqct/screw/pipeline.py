"""Screw trajectories end to end: for each planned screw (entry -> tip, RAS mm) the calibrated
BMD in its cylinder, in the thread shell around it and along its path, the shell's cortical
contact, the level it lies in and a cement suggestion (a research aid).

``analyze_screws`` takes a CT in HU, a calibration (or None for HU only) and the screw lines,
optionally seed points or a vertebra label map to name the level and split the path into
pedicle and body, and returns a :class:`ScrewResult` whose ``to_dict`` is ``screw.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from boneqct.calibration.fit import Calibration
from boneqct.errors import ScrewError, SpineError
from boneqct.io.resample import labels_to_grid
from boneqct.options import options_to_dict
from boneqct.progress import track
from boneqct.screw.measure import screw_density, screw_quality
from boneqct.screw.options import ScrewOptions
from boneqct.screw.trajectory import ScrewLine, sample_screw
from boneqct.spine.interpret import CEMENT_NOTE, cement_augmentation, spine_basis
from boneqct.spine.levels import LABEL_SCHEMES
from boneqct.spine.pipeline import body_finders
from boneqct.volume import Volume

#: Where the screw measurement and its thresholds are described.
SCREW_DOC = "docs/domain.md section 10"


@dataclass
class ScrewMeasurement:
    """One planned screw (the ``screws[]`` entries of ``screw.json``). BMD in mg/cm3 of the
    calibration's material; a screw not measured has ``measured`` False, its ``reason`` and
    None in every measured field."""

    name: str
    entry_ras_mm: list[float]
    tip_ras_mm: list[float]
    length_mm: float
    diameter_mm: float
    shell_mm: float
    measured: bool = True
    reason: str | None = None
    level: str | None = None
    bmd_mg_cm3: float | None = None
    sd_mg_cm3: float | None = None
    mean_hu: float | None = None
    shell_bmd_mg_cm3: float | None = None
    shell_mean_hu: float | None = None
    min_segment_bmd_mg_cm3: float | None = None
    min_segment_hu: float | None = None
    min_segment_index: int | None = None
    segments: list[dict] = field(default_factory=list)
    cortical_contact_fraction: float | None = None
    cortical_threshold: str | None = None
    cylinder_volume_mm3: float | None = None
    shell_volume_mm3: float | None = None
    in_body_fraction: float | None = None
    cement_suggested: bool | None = None
    qc: dict | None = None


@dataclass
class ScrewResult:
    """All planned screws of one exam."""

    calibration: object | None
    screws: list[ScrewMeasurement]
    cement_threshold_mg_cm3: float
    warnings: list[str] = field(default_factory=list)
    interpretation: dict | None = None
    options: dict | None = None

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict:
        """The ``screw.json`` document."""
        return {
            "calibrated": self.calibrated,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "material": None if self.calibration is None else self.calibration.material,
            "screws": [vars(s).copy() for s in self.screws],
            "cement_threshold_mg_cm3": self.cement_threshold_mg_cm3,
            "cement_note": (CEMENT_NOTE if (self.interpretation or {}).get("diagnostic")
                            else None),
            "method": SCREW_DOC,
            "interpretation": self.interpretation,
            "warnings": self.warnings,
            "options": self.options,
        }

    @classmethod
    def from_dict(cls, document: dict) -> ScrewResult:
        """The result a ``screw.json`` document (``to_dict``) describes."""
        calibration = document.get("calibration")
        keys = {f.name for f in fields(ScrewMeasurement)}
        return cls(
            calibration=None if calibration is None else Calibration.from_dict(calibration),
            screws=[ScrewMeasurement(**{k: v for k, v in s.items() if k in keys})
                    for s in document["screws"]],
            cement_threshold_mg_cm3=document["cement_threshold_mg_cm3"],
            warnings=list(document.get("warnings") or []),
            interpretation=document.get("interpretation"), options=document.get("options"))


def analyze_screws(volume_hu: Volume, calibration=None, options: ScrewOptions | None = None, *,
                   lines: list[ScrewLine], seeds: dict | None = None,
                   labels: Volume | None = None) -> ScrewResult:
    """Measure the bone along each planned screw.

    A screw that cannot be measured (leaving the image, too few voxels, through metal or
    air) is kept with its reason and no number; only when none is measured is ScrewError
    raised.

    Args:
        volume_hu: CT in HU.
        calibration: ``boneqct.calibration.Calibration``, or None (HU only: no BMD, no
            cement suggestion).
        options: diameter, shell, segments, thresholds (``ScrewOptions``; None: defaults).
        lines: the planned screws (``boneqct.screw.trajectory.screw_line``), names unique.
        seeds: level -> a point in its vertebral body (RAS mm): the screw's level is the
            seed nearest its tip whose body it enters; that body splits pedicle from body.
        labels: vertebra label map (``options.label_scheme`` numbering): the level is the
            vertebra holding most of the cylinder; its body splits pedicle from body.
    """
    options = options or ScrewOptions()
    if not lines:
        raise ScrewError("No screw was given; give each planned screw as --line "
                         "NAME=R,A,S:R,A,S (entry:tip, RAS mm) or a markups line file.")
    names = [line.name for line in lines]
    if len(set(names)) != len(names):
        raise ScrewError("Two screws share a name; give each planned screw its own name.")
    basis = spine_basis(calibration)
    warnings = (["Uncalibrated: values are HU only; no BMD or cement suggestion."]
                if calibration is None else basis.warnings())
    levels = _LevelFinder(volume_hu, seeds, labels, options.label_scheme, warnings)
    screws = [_measure_one(volume_hu, line, calibration, options, levels,
                           basis.diagnostic, warnings)
              for line in track(lines, "screw: trajectories measured")]
    if not any(s.measured for s in screws):
        raise ScrewError("No screw could be measured: " + " ".join(
            f"{s.name}: {s.reason}." for s in screws))
    return ScrewResult(calibration=calibration, screws=screws,
                       cement_threshold_mg_cm3=options.cement_threshold_mg_cm3,
                       warnings=warnings, interpretation=basis.to_dict(),
                       options=options_to_dict(options))


def _measure_one(volume_hu: Volume, line: ScrewLine, calibration, options: ScrewOptions,
                 levels: _LevelFinder, diagnostic: bool, warnings: list[str]) -> ScrewMeasurement:
    """The measurement of one screw, or its reason for having none."""
    out = ScrewMeasurement(name=line.name, entry_ras_mm=[float(v) for v in line.entry_ras_mm],
                           tip_ras_mm=[float(v) for v in line.tip_ras_mm],
                           length_mm=line.length_mm, diameter_mm=options.diameter_mm,
                           shell_mm=options.shell_mm)
    sampling = sample_screw(volume_hu, line, options.diameter_mm, options.shell_mm,
                            options.segment_mm)
    out.qc, reason = screw_quality(volume_hu, sampling)
    if reason is not None:
        out.measured, out.reason = False, reason
        warnings.append(f"{line.name} not measured: {reason}.")
        return out
    out.level, body_mask = levels.find(line, sampling)
    density = screw_density(volume_hu, sampling, calibration, options.cortical_threshold_mg_cm3,
                            body_mask)
    for key, value in density.items():
        setattr(out, key, value)
    if diagnostic and out.bmd_mg_cm3 is not None:
        out.cement_suggested = cement_augmentation(out.bmd_mg_cm3,
                                                   options.cement_threshold_mg_cm3)
    return out


class _LevelFinder:
    """The vertebra a screw lies in and its body's mask (for the pedicle/body split), from
    seed points or a vertebra label map; each body delineated once."""

    def __init__(self, volume_hu: Volume, seeds: dict | None, labels: Volume | None,
                 scheme: str, warnings: list[str]):
        self.volume_hu, self.seeds, self.warnings = volume_hu, seeds, warnings
        self.labels_on_ct = None
        self.scheme = LABEL_SCHEMES[scheme]
        self.finders = {}
        self.bodies: dict[str, np.ndarray | None] = {}
        if seeds is not None or labels is not None:
            self.finders = body_finders(volume_hu, seeds=seeds, labels=labels, scheme=scheme)
        if labels is not None:
            same_grid = (labels.array_kji.shape == volume_hu.array_kji.shape
                         and np.allclose(labels.ijk_to_ras, volume_hu.ijk_to_ras, atol=1e-3))
            self.labels_on_ct = labels if same_grid else labels_to_grid(labels, volume_hu)

    def find(self, line: ScrewLine, sampling) -> tuple[str | None, np.ndarray | None]:
        """(level, body mask on the CT grid) of a screw; (None, None) without seeds or labels
        or when the screw reaches no vertebra."""
        if not self.finders:
            return None, None
        level = (self._level_from_labels(sampling) if self.labels_on_ct is not None
                 else self._nearest_seed(line))
        if level is None:
            self.warnings.append(f"{line.name}: the screw's cylinder lies in no labelled "
                                 "vertebra; no level is given.")
            return None, None
        mask = self._body_mask(level)
        if mask is not None and self.labels_on_ct is None:
            k, j, i = sampling.kji.T
            if not np.dot(sampling.cylinder_weight, mask[k, j, i]) > 0:
                self.warnings.append(f"{line.name}: the screw does not reach the body of "
                                     f"{level}, the nearest seed to its tip; no level is given.")
                return None, None
        return level, mask

    def _level_from_labels(self, sampling) -> str | None:
        k, j, i = sampling.kji.T
        values = self.labels_on_ct.array_kji[k, j, i]
        weight = {value: float(sampling.cylinder_weight[values == value].sum())
                  for value in np.unique(values) if int(value) in self.scheme}
        return self.scheme[int(max(weight, key=weight.get))] if weight else None

    def _nearest_seed(self, line: ScrewLine) -> str:
        return min(self.seeds, key=lambda level: float(np.linalg.norm(
            np.asarray(self.seeds[level], float) - line.tip_ras_mm)))

    def _body_mask(self, level: str) -> np.ndarray | None:
        if level not in self.bodies:
            try:
                self.bodies[level] = self.finders[level]().body_mask_kji
            except SpineError as exc:
                self.warnings.append(f"{level}: the vertebral body could not be delineated "
                                     f"({exc}); the path is not split into pedicle and body.")
                self.bodies[level] = None
        return self.bodies[level]
