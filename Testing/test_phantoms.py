"""Digital spine phantom: geometry, HU model, partial volume/PSF/noise and the truth it reports."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.optimize import curve_fit
from scipy.special import erfc

from boneqct.calibration import load_phantom_definition
from boneqct.phantoms import (
    KVP_CALIBRATION_PRESETS,
    ScannerParams,
    SpinePhantomParams,
    make_spine_phantom,
    write_phantom,
)
from boneqct.phantoms.anatomy import SOFT_TISSUE, Anatomy
from boneqct.phantoms.scanner import (
    dithered_offsets_mm,
    slice_profile_offsets_mm,
    subsample_offsets_mm,
)

NOISE_FREE = ScannerParams(noise_sd_hu=0.0)
FEW_SLICES = ScannerParams(noise_sd_hu=0.0, n_slices=3)


@pytest.fixture(scope="module")
def clean():
    return make_spine_phantom(SpinePhantomParams(), NOISE_FREE, seed=0)


@pytest.fixture(scope="module")
def noisy():
    return make_spine_phantom(SpinePhantomParams(), ScannerParams(noise_sd_hu=20.0), seed=0)


def _voxel_ras(volume):
    """RAS coordinates (mm) of every voxel centre, arrays shaped like the volume (KJI)."""
    k, j, i = np.indices(volume.array_kji.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    return volume.ijk_to_ras_points(ijk).reshape(*volume.array_kji.shape, 3)


def _hu_at(volume, point_ras_mm):
    i, j, k = np.rint(volume.ras_to_ijk_points(point_ras_mm)[0]).astype(int)
    return float(volume.array_kji[k, j, i])


def test_deterministic_for_a_seed():
    first = make_spine_phantom(scanner=ScannerParams(n_slices=2), seed=7)
    second = make_spine_phantom(scanner=ScannerParams(n_slices=2), seed=7)
    other = make_spine_phantom(scanner=ScannerParams(n_slices=2), seed=8)
    np.testing.assert_array_equal(first.volume.array_kji, second.volume.array_kji)
    assert first.truth == second.truth
    assert not np.array_equal(first.volume.array_kji, other.volume.array_kji)
    assert first.volume.array_kji.dtype == np.int16 and first.labels.array_kji.dtype == np.uint8


def test_grid_is_axial_lps_like(clean):
    m = clean.volume.ijk_to_ras
    np.testing.assert_allclose(np.diag(m)[:3], [-1.25, -1.25, 2.0])
    np.testing.assert_allclose(m[:3, :3] - np.diag(np.diag(m)[:3]), 0.0)
    np.testing.assert_array_equal(clean.labels.ijk_to_ras, m)
    assert clean.volume.size_ijk == (272, 208, 48)
    rods = clean.truth["calibration_phantom"]["rods"]
    i_a = clean.volume.ras_to_ijk_points(rods[0]["center_ras_mm"])[0, 0]
    i_e = clean.volume.ras_to_ijk_points(rods[-1]["center_ras_mm"])[0, 0]
    assert i_a < i_e  # rod A on the patient's right = low i
    vertebra_j = clean.volume.ras_to_ijk_points(clean.truth["vertebrae"][1]["body_center_ras_mm"])
    assert clean.volume.ras_to_ijk_points(rods[0]["center_ras_mm"])[0, 1] > vertebra_j[0, 1]


def test_calibration_model_and_120_kvp_preset(clean):
    calibration = clean.truth["calibration"]
    sigma_ref, beta_ref = KVP_CALIBRATION_PRESETS[120]
    assert sigma_ref == pytest.approx(1.4668, abs=1e-4)
    assert beta_ref == pytest.approx(-1009.75, abs=0.01)
    assert calibration["slope_hu_per_mg_cm3"] == pytest.approx(sigma_ref - 0.2174)
    assert calibration["intercept_hu"] == pytest.approx(beta_ref + 999.6)
    assert calibration["material"] == "K2HPO4" and calibration["kvp"] == 120
    for rod in clean.truth["calibration_phantom"]["rods"]:
        expected = rod["water_mg_cm3"] + sigma_ref * rod["density_mg_cm3"] + beta_ref
        assert rod["expected_hu"] == pytest.approx(expected)


def test_trabecular_hu_at_vertebra_centres(clean):
    calibration = clean.truth["calibration"]
    ras = _voxel_ras(clean.volume)
    for vertebra in clean.truth["vertebrae"]:
        offset = ras - np.array(vertebra["body_center_ras_mm"])
        axial_mm = offset @ np.array(vertebra["body_axis_ras"])
        radial_mm = np.linalg.norm(offset - axial_mm[..., None] * vertebra["body_axis_ras"], axis=-1)
        core = (radial_mm < 0.6 * vertebra["trabecular_semi_axes_mm"][0]) & (
            np.abs(axial_mm) < vertebra["trabecular_height_mm"] / 2.0 - 4.0)
        assert core.sum() > 100
        expected_hu = (calibration["slope_hu_per_mg_cm3"] * vertebra["trabecular_bmd_mg_cm3"]
                       + calibration["intercept_hu"])
        assert clean.volume.array_kji[core].mean() == pytest.approx(expected_hu, abs=1.0)
        assert _hu_at(clean.volume, vertebra["body_center_ras_mm"]) == pytest.approx(
            expected_hu, abs=1.0)


def test_rod_hu_match_the_model(clean):
    ras = _voxel_ras(clean.volume)
    for rod in clean.truth["calibration_phantom"]["rods"]:
        radial_mm = np.linalg.norm(ras[..., :2] - np.array(rod["center_ras_mm"][:2]), axis=-1)
        core = radial_mm < rod["diameter_mm"] / 2.0 - 4.0
        assert clean.volume.array_kji[core].mean() == pytest.approx(rod["expected_hu"], abs=1.0)
        assert _hu_at(clean.volume, rod["center_ras_mm"]) == pytest.approx(rod["expected_hu"],
                                                                           abs=1.0)


@pytest.mark.parametrize("name", ["qrm-bdc-3", "qrm-bdc-6", "b-mas-200"])
def test_ha_phantom_truth_and_rod_hu(name):
    phantom = make_spine_phantom(SpinePhantomParams(phantom_name=name), FEW_SLICES, seed=0)
    definition = load_phantom_definition(name)
    calibration = phantom.truth["calibration"]
    sigma_ref, beta_ref = KVP_CALIBRATION_PRESETS[120]
    # 120 kVp: Goodsitt's K2HPO4/HA ratio interpolated to 0.8267, times sigma_CT 1.2494
    assert calibration["slope_hu_per_mg_cm3"] == pytest.approx(
        (0.86 - 0.05 * 40.0 / 60.0) * (sigma_ref - 0.2174))
    assert calibration["slope_hu_per_mg_cm3"] == pytest.approx(1.033, abs=1e-3)
    assert calibration["intercept_hu"] == pytest.approx(beta_ref + 999.6)
    assert calibration["material"] == "HA" and calibration["model"] == "linear"
    assert phantom.truth["compartments"]["phantom_body"]["hu"] == pytest.approx(
        calibration["intercept_hu"])
    truth_phantom = phantom.truth["calibration_phantom"]
    assert truth_phantom["material"] == "HA"
    assert truth_phantom["width_mm"] == pytest.approx((len(definition.rods) - 1) * 35.0 + 60.0)
    rods = truth_phantom["rods"]
    assert [r["name"] for r in rods] == [r.name for r in definition.rods]
    ras = _voxel_ras(phantom.volume)
    for rod in rods:
        assert rod["diameter_mm"] == definition.nominal_rod_diameter_mm
        assert rod["water_mg_cm3"] is None
        assert rod["expected_hu"] == pytest.approx(
            calibration["slope_hu_per_mg_cm3"] * rod["density_mg_cm3"] + calibration["intercept_hu"])
        radial_mm = np.linalg.norm(ras[..., :2] - np.array(rod["center_ras_mm"][:2]), axis=-1)
        core = radial_mm < rod["diameter_mm"] / 2.0 - 4.0
        assert phantom.volume.array_kji[core].mean() == pytest.approx(rod["expected_hu"], abs=1.0)


def test_phantom_gap_lowers_phantom_and_table():
    touching = make_spine_phantom(SpinePhantomParams(), FEW_SLICES, seed=0)
    lifted = make_spine_phantom(SpinePhantomParams(phantom_gap_mm=10.0), FEW_SLICES, seed=0)
    y0, y1 = (p.truth["calibration_phantom"]["center_ras_mm"][1] for p in (touching, lifted))
    assert y1 == pytest.approx(y0 - 10.0)
    assert touching.truth["calibration_phantom"]["width_mm"] == 200.0
    # an air gap between the back and the phantom top
    x_ras = touching.truth["calibration_phantom"]["center_ras_mm"][0]
    top_y = y1 + touching.truth["spine_params"]["phantom_thickness_mm"] / 2.0
    assert _hu_at(lifted.volume, [x_ras, top_y + 5.0, 0.0]) < -900
    assert _hu_at(touching.volume, [x_ras, top_y + 5.0, 0.0]) > -200


def test_noise_sd_in_a_uniform_region(clean, noisy):
    soft_hu = clean.truth["tissue_hu"]["soft_tissue"]
    uniform = (clean.volume.array_kji == soft_hu) & (clean.labels.array_kji == SOFT_TISSUE)
    assert uniform.sum() > 10000
    measured_sd = noisy.volume.array_kji[uniform].astype(float).std()
    assert measured_sd == pytest.approx(20.0, rel=0.10)


def _edge_sigma_mm(phantom, rod_index=4):
    """Gaussian sigma (mm) of the edge of one rod, fitted to its radial profile.

    Only pixels near the rod's left-right line are used: the phantom body's surface is 6 mm
    beyond the rod's front and back edges, and air there would pull the profile down.
    """
    rod = phantom.truth["calibration_phantom"]["rods"][rod_index]
    ras = _voxel_ras(phantom.volume)[1]
    offset_mm = ras[..., :2] - np.array(rod["center_ras_mm"][:2])
    radius_mm = np.linalg.norm(offset_mm, axis=-1)
    near = (np.abs(radius_mm - rod["diameter_mm"] / 2.0) < 5.0) & (np.abs(offset_mm[..., 1]) < 6.0)
    r, hu = radius_mm[near], phantom.volume.array_kji[1][near].astype(float)

    def edge(r_mm, inside_hu, outside_hu, edge_mm, sigma_mm):
        return outside_hu + (inside_hu - outside_hu) * 0.5 * erfc(
            (r_mm - edge_mm) / (np.sqrt(2.0) * sigma_mm))

    start = (rod["expected_hu"], 0.0, rod["diameter_mm"] / 2.0, 1.0)
    (_, _, edge_mm, sigma_mm), _ = curve_fit(edge, r, hu, p0=start)
    assert edge_mm == pytest.approx(rod["diameter_mm"] / 2.0, abs=0.2)
    return abs(sigma_mm)


@pytest.mark.parametrize("fwhm_mm", [1.0, 3.0])
def test_psf_broadens_edges_as_its_fwhm_says(fwhm_mm):
    scanner = ScannerParams(noise_sd_hu=0.0, n_slices=3, psf_fwhm_mm=fwhm_mm)
    phantom = make_spine_phantom(scanner=scanner)
    psf_sigma_mm = fwhm_mm / 2.3548
    expected_mm = np.sqrt(psf_sigma_mm**2 + scanner.pixel_mm**2 / 12.0)  # PSF and pixel box
    sigma_mm = _edge_sigma_mm(phantom)
    assert sigma_mm == pytest.approx(expected_mm, rel=0.15)
    assert 2.563 * sigma_mm == pytest.approx(2.563 * expected_mm, rel=0.15)  # 10-90% width


def test_tilt_moves_vertebrae_as_the_truth_says(clean):
    tilt_deg = 15.0
    tilted = make_spine_phantom(SpinePhantomParams(spine_tilt_deg=tilt_deg), NOISE_FREE)
    spacing_mm = SpinePhantomParams().vertebra_spacing_mm
    straight_l2 = np.array(clean.truth["vertebrae"][1]["body_center_ras_mm"])
    ras = _voxel_ras(tilted.volume)
    for index, vertebra in enumerate(tilted.truth["vertebrae"]):
        along_mm = (1 - index) * spacing_mm
        expected = straight_l2 + along_mm * np.array(
            [0.0, np.sin(np.radians(tilt_deg)), np.cos(np.radians(tilt_deg))])
        np.testing.assert_allclose(vertebra["body_center_ras_mm"], expected, atol=1e-9)
        centroid = ras[tilted.labels.array_kji == vertebra["label"]].mean(axis=0)
        np.testing.assert_allclose(centroid, expected, atol=0.5)
        assert _hu_at(tilted.volume, expected) == pytest.approx(vertebra["trabecular_hu"], abs=1.0)


def test_phantom_pose_moves_the_rods():
    params = SpinePhantomParams(phantom_offset_mm=(15.0, -5.0), phantom_rotation_deg=8.0)
    posed = make_spine_phantom(params, FEW_SLICES)
    straight = make_spine_phantom(SpinePhantomParams(), FEW_SLICES)
    ras = _voxel_ras(posed.volume)
    for rod, rod0 in zip(posed.truth["calibration_phantom"]["rods"],
                         straight.truth["calibration_phantom"]["rods"], strict=True):
        center = np.array(rod["center_ras_mm"])
        centroid = ras[posed.labels.array_kji == rod["label"]].mean(axis=0)
        np.testing.assert_allclose(centroid[:2], center[:2], atol=0.3)
        c, s = np.cos(np.radians(8.0)), np.sin(np.radians(8.0))
        center0 = np.array(rod0["center_ras_mm"][:2])
        pivot = np.array(straight.truth["calibration_phantom"]["center_ras_mm"][:2])
        expected = pivot + np.array([[c, -s], [s, c]]) @ (center0 - pivot) + (15.0, -5.0)
        np.testing.assert_allclose(center[:2], expected, atol=1e-9)


def test_compartment_volumes(clean):
    compartments = clean.truth["compartments"]
    grid_cm3 = np.prod(clean.volume.spacing_mm) * clean.labels.array_kji.size / 1000.0
    assert sum(c["label_volume_cm3"] for c in compartments.values()) == pytest.approx(grid_cm3)
    assert sum(c["partial_volume_cm3"] for c in compartments.values()) == pytest.approx(grid_cm3)
    for vertebra in clean.truth["vertebrae"]:
        a_mm, b_mm = vertebra["trabecular_semi_axes_mm"]
        analytic_cm3 = np.pi * a_mm * b_mm * vertebra["trabecular_height_mm"] / 1000.0
        measured = compartments[f"trabecular_{vertebra['level']}"]
        assert measured["partial_volume_cm3"] == pytest.approx(analytic_cm3, rel=0.03)
        # the label map samples voxel centres: quantised by the 2 mm slices
        assert measured["label_volume_cm3"] == pytest.approx(analytic_cm3, rel=0.15)
    assert {"fat", "muscle", "blood", "skin", "soft_tissue", "table"} <= set(compartments)


def test_truth_is_json_and_lists_every_label(clean):
    truth = json.loads(json.dumps(clean.truth))
    assert truth["seed"] == 0 and truth["scanner_params"]["kvp"] == 120
    assert set(np.unique(clean.labels.array_kji).astype(str)) <= set(truth["label_table"])
    assert [v["level"] for v in truth["vertebrae"]] == ["L1", "L2", "L3"]
    assert truth["vertebrae"][0]["body_center_ras_mm"][2] > truth["vertebrae"][2][
        "body_center_ras_mm"][2]


def test_write_phantom(tmp_path):
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=3), seed=3)
    paths = write_phantom(phantom, tmp_path)
    assert set(paths) == {"dicom", "nifti", "labels", "truth"}
    dicom_files = sorted(paths["dicom"].glob("*.dcm"))
    assert len(dicom_files) == 3
    header = pydicom.dcmread(dicom_files[0])
    assert header.PatientName == "PHANTOM^DIGITAL" and header.PatientID == "BQCT-PHANTOM-3"
    assert float(header.KVP) == 120 and header.StudyDate == "20250101"
    assert json.loads(paths["truth"].read_text()) == json.loads(json.dumps(phantom.truth))
    image = sitk.ReadImage(str(paths["nifti"]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom.volume.array_kji)
    origin_ras = np.array(image.GetOrigin()) * (-1, -1, 1)
    np.testing.assert_allclose(origin_ras, phantom.volume.origin_ras_mm, atol=1e-4)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-9)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["labels"])))
    np.testing.assert_array_equal(labels, phantom.labels.array_kji)
    again = write_phantom(phantom, tmp_path, formats=("dicom",))
    assert "nifti" not in again and len(list(again["dicom"].glob("*.dcm"))) == 3


def test_one_cortical_thickness_for_all_levels():
    params = SpinePhantomParams(cortical_thickness_mm=1.2)
    assert params.cortical_thickness_mm == (1.2, 1.2, 1.2)
    with pytest.raises(ValueError):
        SpinePhantomParams(trabecular_bmd_mg_cm3=(50.0, 100.0))


@pytest.mark.parametrize(("supersample", "n_sub"), [(1, 2), (2, 8), (3, 5)])
def test_each_pixel_samples_the_slice_profile_at_evenly_spaced_depths(supersample, n_sub):
    """Dithered sub-slices: the supersample**2 in-plane samples of a pixel take distinct shifts,
    so together they sample the rectangular profile at n_sub * supersample**2 even depths."""
    thickness_mm = 3.0
    offsets = dithered_offsets_mm(subsample_offsets_mm(n_sub, thickness_mm), thickness_mm,
                                  supersample, (2 * supersample + 1, 3 * supersample))
    assert offsets.shape == (n_sub, 2 * supersample + 1, 3 * supersample)
    expected = subsample_offsets_mm(n_sub * supersample**2, thickness_mm)
    for row in range(0, 2 * supersample, supersample):
        for col in range(0, 3 * supersample, supersample):
            pixel = offsets[:, row:row + supersample, col:col + supersample]
            np.testing.assert_allclose(np.sort(pixel.ravel()), expected, atol=1e-12)


@pytest.mark.parametrize("tilt_deg", [3.0, 10.0])
def test_thick_slice_partial_volume_of_tilted_endplates(tilt_deg):
    """3 mm slices through endplates tilted against them (no noise, no PSF): every voxel of the
    middle vertebra's mid-sagittal column matches its partial volume integrated exactly along z
    (600 depths) at the renderer's in-plane samples, within two steps of the n_sub x
    supersample**2 depths a pixel samples (undithered sub-slices step by a whole sub-slice,
    contrast / n_sub, along an endplate nearly parallel to the slices)."""
    params = SpinePhantomParams(spine_tilt_deg=tilt_deg, phantom_present=False)
    scanner = ScannerParams(noise_sd_hu=0.0, psf_fwhm_mm=0.0, slice_thickness_mm=3.0,
                            slice_spacing_mm=3.0, n_slices=12)
    phantom = make_spine_phantom(params, scanner)
    lut = np.zeros(256)
    for compartment in phantom.truth["compartments"].values():
        lut[compartment["label"]] = compartment["hu"]
    anatomy = Anatomy(params)
    ijk_to_ras, ss = phantom.volume.ijk_to_ras, scanner.supersample
    centre_ijk = np.linalg.solve(ijk_to_ras, [*anatomy.spine_center_ras_mm, 1.0])
    half_depth_px = int(phantom.truth["vertebrae"][1]["body_semi_axes_mm"][1] / 2 / scanner.pixel_mm)
    i = int(round(centre_ijk[0]))
    js = np.arange(int(round(centre_ijk[1])) - half_depth_px, int(round(centre_ijk[1])) + half_depth_px + 1)
    ks = np.arange(scanner.n_slices)
    sub = subsample_offsets_mm(ss, 1.0)
    x = ijk_to_ras[0, 3] + ijk_to_ras[0, 0] * (i + sub)
    y = ijk_to_ras[1, 3] + ijk_to_ras[1, 1] * (js[:, None] + sub).ravel()
    z = ijk_to_ras[2, 3] + ijk_to_ras[2, 2] * ks[:, None] + subsample_offsets_mm(600, 3.0)
    labels = anatomy.spine_labels(x[None, None, :], y[None, :, None], z.ravel()[:, None, None])
    assert labels.min() > 0  # inside the spine's column throughout
    exact_hu = lut[labels].reshape(len(ks), 600, len(js), ss, ss).mean(axis=(1, 3, 4))
    error_hu = phantom.volume.array_kji[np.ix_(ks, js, [i])][..., 0] - exact_hu
    contrast_hu = exact_hu.max() - exact_hu.min()
    assert contrast_hu > 500.0  # the column crosses the cortical endplates
    depths = len(slice_profile_offsets_mm(scanner)) * ss**2
    assert np.abs(error_hu).max() <= 2.0 * contrast_hu / depths + 0.5

