"""The vertebral finite-element measurement from a CT: the one entry point ``analyze_fe`` that
the command line, the Slicer module and the demo call.

Body of the level (from its seed or a label map) -> memory estimate checked before meshing
(``boneqct.resources``) -> HU to calibrated density -> ``boneqct.fe.vertebra.analyze_vertebra``.
"""

from __future__ import annotations

from boneqct.calibration.fit import MATERIAL_UNSTATED, Calibration, convert_volume_to_bmd
from boneqct.errors import FEError
from boneqct.fe.options import FEOptions
from boneqct.fe.vertebra import FEResult, analyze_vertebra
from boneqct.progress import step
from boneqct.resources import check_fe_model, fe_model_estimate
from boneqct.spine.body import body_from_label, delineate_body_from_seed
from boneqct.spine.levels import label_for_level, normalize_level
from boneqct.spine.types import VertebralBody
from boneqct.volume import Volume


def analyze_fe(volume_hu: Volume, calibration: Calibration | None,
               options: FEOptions | None = None, *, level: str, seeds: dict | None = None,
               labels: Volume | None = None, sex: str | None = None) -> FEResult:
    """Stiffness (N/mm) and strength (N) of one vertebral level of a CT.

    Args:
        volume_hu: CT in HU.
        calibration: the HU -> density line; its material must be stated (the density-modulus
            laws depend on it).
        options: element size, law, criterion, PMMA layers, preconditioner, label numbering
            (``boneqct.fe.options.FEOptions``; None: the defaults).
        level: the level analysed ("L2").
        seeds: level name -> seed point (RAS mm) inside the vertebral body; or
        labels: vertebra label map (any grid covering the CT) in ``options.label_scheme``
            numbering. Give one of the two.
        sex: "F" or "M" for the fragile flag (None: no flag).

    Raises:
        FEError: no calibration or its material unstated, no or both body inputs, no seed for
            the level; ResourceError: the model would exceed the memory limit
            (``boneqct.resources.memory_limit_gb``); SpineError: the body is not found.
    """
    options = options or FEOptions()
    _check_calibration(calibration)
    step(f"FE {level}: vertebral body")
    body = _body(volume_hu, normalize_level(level), seeds, labels, options.label_scheme)
    check_fe_model(fe_model_estimate(body.body_mask_kji, volume_hu.ijk_to_ras, body.axis_ras,
                                     body.anterior_ras, options.element_mm, options.pmma_mm),
                   options.element_mm)
    step(f"FE {body.level}: mesh, linear solve, load increments")
    return analyze_vertebra(convert_volume_to_bmd(volume_hu, calibration), body, options,
                            density_material=calibration.material, sex=sex)


def _check_calibration(calibration: Calibration | None) -> None:
    """Refuse a missing calibration or one whose material is not stated."""
    if calibration is None:
        raise FEError("The finite-element model needs calibrated density: give --phantom, "
                      "--calibration or --slope/--intercept (in Slicer: calibrate in QCT Bone "
                      "Density).")
    if calibration.material == MATERIAL_UNSTATED:
        raise FEError("The finite-element model's density laws depend on the calibration's "
                      "material: state it for the manual line with --material K2HPO4|HA.")


def _body(volume_hu: Volume, level: str, seeds: dict | None, labels: Volume | None,
          label_scheme: str) -> VertebralBody:
    """The delineated vertebral body of ``level`` from its seed or the label map."""
    if (seeds is None) == (labels is None):
        raise FEError("Give either seed points or a vertebra label map, not both or neither.")
    if labels is not None:
        return body_from_label(volume_hu, labels, label_for_level(level, label_scheme), level)
    if level not in seeds:
        raise FEError(f"No seed point for {level}: give one (e.g. --seed {level}=R,A,S) or name "
                      f"a point {level} in the seed list.")
    return delineate_body_from_seed(volume_hu, seeds[level], level)
