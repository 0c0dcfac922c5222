"""Find and measure the trabecular inserts of an ESP-like spine phantom.

Each vertebra's cortical shell encloses its trabecular insert: per axial slice, the voxels above
``bone_threshold_hu`` are filled and the enclosed holes labelled in 3D; holes of at least
``min_insert_area_mm2`` in-plane (the spinal canal is smaller) and ``min_insert_height_mm``
along the slices are the inserts, ordered superior first (ESP: L1, L2, L3 = 50, 100, 200 mg
HA/cm3). Each insert is measured in a cylinder along the slice axis, ``roi_height_mm`` high,
of ``roi_radius_fraction`` of the insert's equivalent radius, centred on the insert (the ALBA
QA software uses 10 mm high cylinders at 70% of the body radius; docs/domain.md section 2).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.errors import QAError
from boneqct.volume import Volume

#: ALBA QA regions: 10 mm high cylinders at 70% of the body radius (docs/domain.md section 2).
ROI_HEIGHT_MM = 10.0
ROI_RADIUS_FRACTION = 0.7
#: Cortex threshold (HU): between soft tissue (< 100 HU) and an ESP cortex (800 mg HA/cm3).
BONE_THRESHOLD_HU = 300.0
#: A centrum of about 35 mm (ALBA) encloses ~700 mm2; the spinal canal (r 9.3 mm) ~270 mm2.
MIN_INSERT_AREA_MM2 = 400.0
MIN_INSERT_HEIGHT_MM = 6.0


def load_nominal(name_or_path: str | Path) -> dict:
    """Nominal insert values: a bundled name (``esp``, ``digital-esp``) or a JSON file."""
    path = Path(name_or_path)
    folder = resources.files("boneqct") / "data" / "qa"
    bundled = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    try:
        if path.suffix.lower() == ".json" and path.is_file():
            data = json.loads(path.read_text())
        elif str(name_or_path) in bundled:
            data = json.loads((folder / f"{name_or_path}.json").read_text())
        else:
            raise QAError(f"Unknown QA phantom type '{name_or_path}'. Use one of "
                          f"{', '.join(bundled)} or a JSON file of the same form.")
        inserts = [{"name": str(i["name"]), "nominal_mg_cm3": float(i["nominal_mg_cm3"])}
                   for i in data["inserts"]]
        return {"name": str(data["name"]), "material": str(data["material"]),
                "source": str(data.get("source", "")), "inserts": inserts}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise QAError(f"The QA nominal-value file '{name_or_path}' is not valid ({exc!s}); it "
                      "needs name, material and inserts with name and nominal_mg_cm3.") from None


def find_inserts(volume: Volume, bone_threshold_hu: float = BONE_THRESHOLD_HU,
                 min_insert_area_mm2: float = MIN_INSERT_AREA_MM2,
                 min_insert_height_mm: float = MIN_INSERT_HEIGHT_MM) -> list[np.ndarray]:
    """Boolean KJI masks of the enclosed trabecular inserts, most superior first."""
    spacing_mm = volume.spacing_mm
    pixel_mm2 = spacing_mm[0] * spacing_mm[1]
    bone = volume.array_kji > bone_threshold_hu
    holes = np.zeros_like(bone)
    for k in range(bone.shape[0]):
        holes[k] = ndimage.binary_fill_holes(bone[k]) & ~bone[k]
    labels, n = ndimage.label(holes)
    inserts = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[found] == index
        n_slices = int(np.count_nonzero(mask.any(axis=(1, 2))))
        area_mm2 = mask.sum() / max(n_slices, 1) * pixel_mm2
        if area_mm2 >= min_insert_area_mm2 and n_slices * spacing_mm[2] >= min_insert_height_mm:
            full = np.zeros_like(bone)
            full[found] = mask
            inserts.append(full)
    centres_ras = [volume.ijk_to_ras_points(np.argwhere(m).mean(axis=0)[::-1])[0] for m in inserts]
    order = np.argsort([-c[2] for c in centres_ras])
    return [inserts[i] for i in order]


def insert_roi(volume: Volume, insert_mask_kji: np.ndarray,
               height_mm: float = ROI_HEIGHT_MM,
               radius_fraction: float = ROI_RADIUS_FRACTION) -> tuple[np.ndarray, dict]:
    """Cylindrical ROI (KJI mask) along the slice axis in the middle of an insert, and its
    geometry (centre RAS mm, radius mm, height mm)."""
    spacing_mm = volume.spacing_mm
    kji = np.argwhere(insert_mask_kji)
    centre_kji = kji.mean(axis=0)
    n_slices = len(np.unique(kji[:, 0]))
    radius_mm = radius_fraction * np.sqrt(len(kji) / n_slices * spacing_mm[0] * spacing_mm[1] / np.pi)
    k, j, i = np.indices(insert_mask_kji.shape, sparse=True)
    in_plane_mm2 = ((i - centre_kji[2]) * spacing_mm[0]) ** 2 + ((j - centre_kji[1]) * spacing_mm[1]) ** 2
    along_mm = np.abs(k - centre_kji[0]) * spacing_mm[2]
    roi = (in_plane_mm2 <= radius_mm**2) & (along_mm <= height_mm / 2.0)
    geometry = {"center_ras_mm": volume.ijk_to_ras_points(centre_kji[::-1])[0].tolist(),
                "radius_mm": float(radius_mm), "height_mm": float(height_mm)}
    return roi, geometry


def measure_esp(volume: Volume, nominal: dict, calibration=None) -> list[dict]:
    """Measure the inserts (and the calibration rods of a phantom calibration) vs nominal.

    Args:
        volume: CT of the QA phantom in HU.
        nominal: from ``load_nominal``.
        calibration: a ``Calibration`` (its material must match the nominal values'), or
            None to record mean HU only.

    Returns:
        One dict per insert/rod: insert, nominal_mg_cm3, value, unit, deviation_percent,
        mean_hu, sd_hu, n_voxels, center_ras_mm.

    Raises:
        QAError: the number of inserts found differs from the nominal file's, or the
            calibration's material differs from the nominal values'.
    """
    if calibration is not None and calibration.material != nominal["material"]:
        raise QAError(
            f"The calibration is in mg {calibration.material}/cm3 but the '{nominal['name']}' "
            f"nominal values are in mg {nominal['material']}/cm3. Calibrate with a phantom of "
            "the same material, or give nominal values in the calibration's material "
            "(--phantom-type FILE).")
    masks = find_inserts(volume)
    if len(masks) != len(nominal["inserts"]):
        raise QAError(
            f"Found {len(masks)} enclosed vertebral inserts where the '{nominal['name']}' "
            f"phantom has {len(nominal['inserts'])}. Check that the whole phantom is in the "
            "scan, with each vertebra's cortex visible above 300 HU, and that the scan is axial.")
    rows = []
    for spec, mask in zip(nominal["inserts"], masks, strict=True):
        roi, geometry = insert_roi(volume, mask)
        hu = volume.array_kji[roi].astype(float)
        mean_hu = float(hu.mean())
        value = None if calibration is None else float(calibration.hu_to_bmd(mean_hu))
        rows.append({
            "insert": spec["name"], "nominal_mg_cm3": spec["nominal_mg_cm3"],
            "value": mean_hu if value is None else value,
            "unit": "HU" if value is None else f"mg {calibration.material}/cm3",
            "deviation_percent": None if value is None
            else 100.0 * (value - spec["nominal_mg_cm3"]) / spec["nominal_mg_cm3"],
            "mean_hu": mean_hu, "sd_hu": float(hu.std(ddof=1)), "n_voxels": int(roi.sum()),
            "center_ras_mm": geometry["center_ras_mm"],
        })
    if calibration is not None and calibration.method == "phantom":
        for rod in calibration.rods:
            value = rod["density_mg_cm3"] + rod["residual_mg_cm3"]
            rows.append({
                "insert": f"rod_{rod['name']}", "nominal_mg_cm3": rod["density_mg_cm3"],
                "value": value, "unit": f"mg {calibration.material}/cm3",
                "deviation_percent": None,  # near-zero nominal densities: absolute residual only
                "mean_hu": rod["measured_hu"], "sd_hu": rod["sd_hu"], "n_voxels": rod["n_voxels"],
                "center_ras_mm": rod["center_ras_mm"],
            })
    return rows
