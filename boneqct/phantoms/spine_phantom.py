"""Synthetic spine QCT exam: render the anatomy with partial volume, PSF and noise; its truth.

Rendering per slice: the z-invariant compartments (body, table, rod phantom) are rendered
once on a grid ``supersample`` times finer in-plane; the spine is rendered per slice on that
fine grid inside its bounding box, at sub-slices spread evenly across the slice thickness
(rectangular slice profile), each fine sample of a pixel shifted by its own share of a
sub-slice, so a pixel samples the profile at ``supersample**2`` times as many depths (the
partial volume of an endplate nearly parallel to the slices steps that much finer along it:
``scanner.dithered_offsets_mm``). The fine HU are averaged over the sub-slices, blurred
in-plane by the Gaussian PSF (on the fine grid, so a PSF narrower than a pixel is still
sampled well), then averaged over each pixel (partial volume); noise is added and the result
rounded to int16. The blur is linear, so the blurred background is computed once and each
slice adds the blurred difference the spine makes inside its box.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boneqct import __version__
from boneqct.io import write_text_atomic, write_volume
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms.anatomy import (
    CORTICAL_BONE,
    ILIAC_WING,
    LABEL_DESCRIPTIONS,
    PHANTOM_BODY,
    POSTERIOR_ELEMENTS,
    RIB,
    SACRAL_ALA,
    Anatomy,
    SpinePhantomParams,
)
from boneqct.phantoms.scanner import (
    FWHM_PER_SD,
    PSF_TRUNCATE_SD,
    Calibration,
    HACalibration,
    ScannerParams,
    add_noise,
    apply_psf,
    calibration_for,
    dithered_offsets_mm,
    slice_profile_offsets_mm,
    subsample_offsets_mm,
    tissue_hu_for,
    to_int16_hu,
)
from boneqct.volume import Volume

#: Synthetic, anonymous patient and study (keys as ``boneqct.io.dicom.exam_metadata``).
PHANTOM_EXAM = {"patient_name": "PHANTOM^DIGITAL", "patient_sex": "O",
                "patient_birth_date": "1965-01-01", "patient_age_years": 60,
                "study_date": "2025-01-01", "study_description": "BoneQCT synthetic study",
                "series_description": "BoneQCT digital spine phantom",
                "manufacturer": "BoneQCT", "model": "digital phantom", "modality": "CT"}


@dataclass
class SpinePhantom:
    """A rendered phantom: the CT (HU, int16), its compartment labels and the truth."""

    volume: Volume
    labels: Volume
    truth: dict


def phantom_grid(anatomy: Anatomy, scanner: ScannerParams) -> np.ndarray:
    """The 4x4 IJK->RAS matrix: axial slices, i to patient left, j posterior, k superior.

    The field of view is centred on ``scanner.fov_center_ras_mm`` or, by default, on the
    patient and table in y and the midline in x; the slices are centred on the middle vertebra.
    """
    p = anatomy.params
    if scanner.fov_center_ras_mm is None:
        table_bottom_y = anatomy.table_top_y_ras_mm - p.table_thickness_mm
        center_xy = (0.0, (p.body_outline_depth_mm / 2.0 + table_bottom_y) / 2.0)
    else:
        center_xy = scanner.fov_center_ras_mm
    ni, nj = scanner.matrix
    ijk_to_ras = np.diag([-scanner.pixel_mm, -scanner.pixel_mm, scanner.slice_spacing_mm, 1.0])
    ijk_to_ras[:3, 3] = (
        center_xy[0] + (ni - 1) / 2.0 * scanner.pixel_mm,
        center_xy[1] + (nj - 1) / 2.0 * scanner.pixel_mm,
        anatomy.spine_center_ras_mm[2] - (scanner.n_slices - 1) / 2.0 * scanner.slice_spacing_mm,
    )
    return ijk_to_ras


def _label_hu_lut(anatomy: Anatomy, calibration: Calibration | HACalibration,
                  tissue_hu: dict) -> np.ndarray:
    """HU of every label value (index = label), 256 entries.

    K2HPO4 rods follow the Mindways rod model (their water-equivalent density adds); HA rods
    and the body of an HA phantom (its base material, 0 mg HA/cm3) follow HU = a * rho + b.
    """
    p = anatomy.params
    lut = np.zeros(256)
    for value, name in anatomy.labels.items():
        if name in tissue_hu:
            lut[value] = tissue_hu[name]
    lut[CORTICAL_BONE] = calibration.tissue_hu(p.cortical_bmd_mg_cm3)
    lut[POSTERIOR_ELEMENTS] = calibration.tissue_hu(p.posterior_bmd_mg_cm3)
    lut[[SACRAL_ALA, ILIAC_WING, RIB]] = calibration.tissue_hu(p.posterior_bmd_mg_cm3)
    for vertebra in anatomy.vertebrae:
        lut[vertebra.label] = calibration.tissue_hu(vertebra.trabecular_bmd_mg_cm3)
    if anatomy.definition.material == "HA":
        lut[PHANTOM_BODY] = calibration.tissue_hu(0.0)
    for rod in anatomy.rods:
        lut[rod.label] = (calibration.tissue_hu(rod.density_mg_cm3) if rod.water_mg_cm3 is None
                          else calibration.rod_hu(rod.density_mg_cm3, rod.water_mg_cm3))
    return lut


def _block_mean(fine: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the last two axes (fine grid -> pixels)."""
    rows, cols = fine.shape[-2] // factor, fine.shape[-1] // factor
    return fine.reshape(*fine.shape[:-2], rows, factor, cols, factor).mean(axis=(-3, -1))


def _spine_box(anatomy, ijk_to_ras, scanner, z_ras_mm) -> tuple[slice, slice]:
    """Pixel index ranges (j, i) that can hold spine, or its blur, at any rendered z."""
    half_mm = scanner.slice_thickness_mm / 2.0
    bounds = anatomy.spine_bounds_xy_ras_mm(z_ras_mm.min() - half_mm, z_ras_mm.max() + half_mm)
    psf_reach_mm = PSF_TRUNCATE_SD * scanner.psf_fwhm_mm / FWHM_PER_SD + scanner.pixel_mm
    bounds += np.array([-psf_reach_mm, psf_reach_mm])
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    corners = np.array([[x, y, 0.0, 1.0] for x in bounds[0] for y in bounds[1]])
    ijk = corners @ ras_to_ijk.T
    ni, nj = scanner.matrix
    i0, i1 = np.clip([np.floor(ijk[:, 0].min()), np.ceil(ijk[:, 0].max()) + 1], 0, ni).astype(int)
    j0, j1 = np.clip([np.floor(ijk[:, 1].min()), np.ceil(ijk[:, 1].max()) + 1], 0, nj).astype(int)
    return slice(j0, j1), slice(i0, i1)


def _render(anatomy: Anatomy, scanner: ScannerParams, ijk_to_ras: np.ndarray, lut: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU (int16) and centre labels (uint8) KJI arrays, and sub-sample counts per label."""
    lut = lut.astype(np.float32)
    ni, nj = scanner.matrix
    nk, ss = scanner.n_slices, scanner.supersample
    x_ras = ijk_to_ras[0, 3] + ijk_to_ras[0, 0] * np.arange(ni)
    y_ras = ijk_to_ras[1, 3] + ijk_to_ras[1, 1] * np.arange(nj)
    z_ras = ijk_to_ras[2, 3] + ijk_to_ras[2, 2] * np.arange(nk)
    # fine samples in index order (monotonic along each axis, as the PSF needs)
    fine_index = (np.arange(ni)[:, None] + subsample_offsets_mm(ss, 1.0)[None, :]).ravel()
    x_fine = (ijk_to_ras[0, 3] + ijk_to_ras[0, 0] * fine_index).astype(np.float32)
    fine_index = (np.arange(nj)[:, None] + subsample_offsets_mm(ss, 1.0)[None, :]).ravel()
    y_fine = (ijk_to_ras[1, 3] + ijk_to_ras[1, 1] * fine_index).astype(np.float32)
    z_sub_mm = slice_profile_offsets_mm(scanner)

    fine_pixel_mm = scanner.pixel_mm / ss
    background_fine = anatomy.background_labels(x_fine[None, :], y_fine[:, None])
    background_hu_fine = lut[background_fine]
    background_hu = _block_mean(apply_psf(background_hu_fine, fine_pixel_mm, scanner.psf_fwhm_mm),
                                ss)
    background_center = anatomy.background_labels(x_ras[None, :], y_ras[:, None])
    box_j, box_i = _spine_box(anatomy, ijk_to_ras, scanner, z_ras)
    fine_j = slice(box_j.start * ss, box_j.stop * ss)
    fine_i = slice(box_i.start * ss, box_i.stop * ss)
    box_background_fine = background_fine[fine_j, fine_i]
    box_background_hu_fine = background_hu_fine[fine_j, fine_i]
    box_x_fine, box_y_fine = x_fine[fine_i][None, None, :], y_fine[fine_j][None, :, None]
    outside = np.bincount(background_fine.ravel(), minlength=256)
    outside -= np.bincount(box_background_fine.ravel(), minlength=256)
    counts = outside * (nk * len(z_sub_mm))
    z_fine_mm = dithered_offsets_mm(z_sub_mm, scanner.slice_thickness_mm, ss,
                                    box_background_fine.shape)

    hu_kji = np.empty((nk, nj, ni), dtype=np.int16)
    labels_kji = np.empty((nk, nj, ni), dtype=np.uint8)
    for k, z_mm in enumerate(z_ras):
        spine_fine = anatomy.spine_labels(box_x_fine, box_y_fine,
                                          (z_mm + z_fine_mm).astype(np.float32))
        combined = np.where(spine_fine > 0, spine_fine, box_background_fine[None])
        counts += np.bincount(combined.ravel(), minlength=256)
        spine_delta_hu_fine = lut[combined].mean(axis=0) - box_background_hu_fine
        slice_hu = background_hu.copy()
        slice_hu[box_j, box_i] += _block_mean(
            apply_psf(spine_delta_hu_fine, fine_pixel_mm, scanner.psf_fwhm_mm), ss)
        slice_hu = add_noise(slice_hu, scanner.noise_sd_hu, rng)
        hu_kji[k] = to_int16_hu(slice_hu)
        spine_center = anatomy.spine_labels(x_ras[None, box_i], y_ras[box_j, None], z_mm)
        labels_kji[k] = background_center
        labels_kji[k][box_j, box_i] = np.where(spine_center > 0, spine_center,
                                               background_center[box_j, box_i])
    return hu_kji, labels_kji, counts


def _truth(anatomy, scanner, seed, calibration, lut, labels_kji, counts, ijk_to_ras) -> dict:
    """The JSON-serialisable ground truth of one phantom."""
    p = anatomy.params
    spacing_mm = np.abs(np.diag(ijk_to_ras)[:3])
    voxel_cm3 = float(np.prod(spacing_mm)) / 1000.0
    ss, n_sub = scanner.supersample, len(slice_profile_offsets_mm(scanner))
    sub_sample_cm3 = voxel_cm3 / (ss**2 * n_sub)
    label_counts = np.bincount(labels_kji.ravel(), minlength=256)
    z_center_mm = float(ijk_to_ras[2, 3] + ijk_to_ras[2, 2] * (scanner.n_slices - 1) / 2.0)
    axis_ras = anatomy.spine_axis_ras
    frame = anatomy.spine_frame_ras
    vertebrae = []
    for v in anatomy.vertebrae:
        t = v.cortical_thickness_mm
        vertebrae.append({
            "level": v.level, "label": v.label,
            "trabecular_bmd_mg_cm3": v.trabecular_bmd_mg_cm3,
            "trabecular_hu": float(lut[v.label]),
            "cortical_thickness_mm": t, "cortical_bmd_mg_cm3": p.cortical_bmd_mg_cm3,
            "body_center_ras_mm": v.center_ras_mm.tolist(),
            "body_axis_ras": axis_ras.tolist(),
            "body_lr_axis_ras": frame[:, 0].tolist(), "body_ap_axis_ras": frame[:, 1].tolist(),
            "body_semi_axes_mm": [v.width_mm / 2.0, v.depth_mm / 2.0],
            "body_height_mm": v.height_mm,
            "trabecular_semi_axes_mm": [v.width_mm / 2.0 - t, v.depth_mm / 2.0 - t],
            "trabecular_height_mm": v.height_mm - 2.0 * t,
        })
        if p.deformities:
            semi_v = v.depth_mm / 2.0
            vertebrae[-1]["deformity"] = v.deformity
            vertebrae[-1]["body_heights_at_walls_mm"] = {
                name: float(v.height_mm - 2.0 * anatomy.endplate_sink_mm(v, 0.0, v_mm))
                for name, v_mm in (("anterior", semi_v), ("middle", 0.0),
                                   ("posterior", -semi_v))}
    rods = [{
        "name": r.name, "label": r.label, "material": anatomy.definition.material,
        "density_mg_cm3": r.density_mg_cm3, "water_mg_cm3": r.water_mg_cm3, "expected_hu": float(lut[r.label]),
        "center_ras_mm": [*r.center_xy_ras_mm, z_center_mm], "axis_ras": [0.0, 0.0, 1.0],
        "diameter_mm": r.diameter_mm,
    } for r in anatomy.rods]
    compartments = {
        name: {"label": value, "hu": float(lut[value]),
               "label_volume_cm3": float(label_counts[value] * voxel_cm3),
               "partial_volume_cm3": float(counts[value] * sub_sample_cm3)}
        for value, name in sorted(anatomy.labels.items())
    }
    return {
        "generator": "boneqct.phantoms.make_spine_phantom",
        "boneqct_version": __version__,
        "seed": seed,
        "spine_params": _params_dict(p),
        "scanner_params": {**dataclasses.asdict(scanner), "tissue_hu": dict(scanner.tissue_hu)},
        "grid": {"size_ijk": [*scanner.matrix, scanner.n_slices], "spacing_mm": spacing_mm.tolist(),
                 "slice_thickness_mm": scanner.slice_thickness_mm,
                 "ijk_to_ras": ijk_to_ras.tolist()},
        "calibration": calibration.as_dict(),
        "calibration_phantom": {
            "name": p.phantom_name, "material": anatomy.definition.material,
            "present": p.phantom_present, "width_mm": anatomy.phantom_width_mm,
            "center_ras_mm": [*anatomy.phantom_center_xy_ras_mm, z_center_mm],
            "rotation_deg": p.phantom_rotation_deg, "rods": rods,
        },
        "spine_axis_ras": axis_ras.tolist(),
        "vertebrae": vertebrae,
        "tissue_hu": tissue_hu_for(scanner),
        "label_table": {str(k): v for k, v in sorted(anatomy.labels.items())},
        "label_descriptions": LABEL_DESCRIPTIONS,
        "compartments": compartments,
        "notes": {
            "label_volume_cm3": "voxels of the label map (labels at voxel centres) x voxel volume",
            "partial_volume_cm3": "sum of sub-sample fractions x voxel volume: the analytic "
                                  "volume inside the imaged slab, its ends weighted by the slice "
                                  "profile",
            "calibration": "K2HPO4: 120 kVp is fitted to Ogo's measured Mindways fixture; the "
                           "other kVp presets, the HA slopes (from the K2HPO4 model and "
                           "Goodsitt 1992's K2HPO4/HA ratio) and all soft-tissue HU are "
                           "illustrative; bone densities are in the phantom's material",
            "coordinates": "RAS mm; rods run along z, their centre given at the middle slice",
            "slice_profile": (
                f"rectangular, sampled at {n_sub} sub-slices, the {ss}x{ss} in-plane samples of "
                f"each pixel shifted across a sub-slice: {n_sub * ss * ss} evenly spaced depths "
                "per pixel"),
            # only for sizes by level, so the default phantom's truth stays as it was
            **({} if p.uniform_bodies else {"body_sizes": (
                "per level (vertebrae[].body_semi_axes_mm, body_height_mm); "
                "anatomical_spine_params takes them from Panjabi 1991/1992 as recalled, "
                "unverified (the papers' tables were not read), its discs are placeholders")}),
        },
    }


def _params_dict(params: SpinePhantomParams) -> dict:
    """The anatomy parameters for the truth; ``deformities``, the sacrum and the ribs only when
    given, so the default phantom's truth (and its DICOM UIDs, derived from it) stay as they were."""
    out = dataclasses.asdict(params)
    if not params.deformities:
        del out["deformities"]
    if not params.sacrum:  # likewise the sacrum and ribs (issue 14), absent by default
        del out["sacrum"], out["sacrum_bmd_mg_cm3"]
    if not params.ribs:
        del out["ribs"]
    return out


def make_spine_phantom(params: SpinePhantomParams | None = None,
                       scanner: ScannerParams | None = None, seed: int = 0) -> SpinePhantom:
    """Render a synthetic lumbar-spine CT with a calibration phantom; deterministic per seed."""
    params = params or SpinePhantomParams()
    scanner = scanner or ScannerParams()
    anatomy = Anatomy(params)
    calibration = calibration_for(scanner, anatomy.definition.material)
    lut = _label_hu_lut(anatomy, calibration, tissue_hu_for(scanner))
    ijk_to_ras = phantom_grid(anatomy, scanner)
    rng = np.random.default_rng(seed)
    hu_kji, labels_kji, counts = _render(anatomy, scanner, ijk_to_ras, lut, rng)
    truth = _truth(anatomy, scanner, seed, calibration, lut, labels_kji, counts, ijk_to_ras)
    metadata = {
        **PHANTOM_EXAM,
        "patient_id": f"BQCT-PHANTOM-{seed}",
        "kvp": float(scanner.kvp),
        "exposure_mas": scanner.mas,
        "slice_thickness_mm": scanner.slice_thickness_mm,
        "pixel_spacing_mm": [scanner.pixel_mm, scanner.pixel_mm],
        "convolution_kernel": scanner.convolution_kernel,
        "synthetic": True,
    }
    volume = Volume(hu_kji, ijk_to_ras, metadata)
    labels = Volume(labels_kji, ijk_to_ras.copy(), {"label_table": truth["label_table"]})
    return SpinePhantom(volume, labels, truth)


def write_phantom(phantom: SpinePhantom, out_dir: str | Path,
                  formats: tuple[str, ...] = ("dicom", "nifti")) -> dict[str, Path]:
    """Write the CT (DICOM series and/or NIfTI), the label map (NIfTI) and the truth (JSON).

    Returns the paths by key: ``dicom`` (folder), ``nifti``, ``labels``, ``truth``. The DICOM
    UIDs are derived from the truth, so the same phantom always gets the same UIDs.
    """

    unknown = set(formats) - {"dicom", "nifti"}
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; use 'dicom' and/or 'nifti'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_text = json.dumps(phantom.truth, indent=2) + "\n"
    paths: dict[str, Path] = {}
    if "dicom" in formats:
        paths["dicom"] = out_dir / "dicom"
        write_dicom_series(phantom.volume, paths["dicom"], overwrite=True,
                           series_description=PHANTOM_EXAM["series_description"],
                           uid_seed=hashlib.sha256(truth_text.encode()).hexdigest())
    if "nifti" in formats:
        paths["nifti"] = write_volume(phantom.volume, out_dir / "phantom_ct.nii.gz")
    paths["labels"] = write_volume(phantom.labels, out_dir / "phantom_labels.nii.gz")
    paths["truth"] = write_text_atomic(out_dir / "phantom_truth.json", truth_text)
    return paths
