"""Vertebral body delineation and trabecular ROI: tilted digital phantom, real CT, errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from boneqct.errors import SpineError
from boneqct.io import load_ct, volume_from_sitk, volume_to_sitk
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.spine.body import BALL_RADII_MM, body_from_label, delineate_body_from_seed
from boneqct.spine.roi import place_roi
from boneqct.volume import Volume

#: Seed offsets (RAS mm) from the true body centre: 0, the six axis directions and diagonals,
#: all at 5 mm.
OFFSETS_MM = [np.zeros(3)] + [5.0 * np.array(d, float) for d in (
    (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))] + [
    5.0 / np.sqrt(3.0) * np.array(d, float) for d in ((1, 1, 1), (-1, 1, -1), (1, -1, -1))]


@pytest.fixture(scope="module")
def phantom():
    """Spine tilted 10 degrees, 0.7 x 0.7 x 1.0 mm, 15 HU noise, field cropped to the spine."""
    scanner = ScannerParams(pixel_mm=0.7, matrix=(100, 130), n_slices=100, slice_spacing_mm=1.0,
                            slice_thickness_mm=1.0, noise_sd_hu=15.0, psf_fwhm_mm=1.0,
                            fov_center_ras_mm=(0.0, -10.0))
    return make_spine_phantom(SpinePhantomParams(spine_tilt_deg=10.0), scanner, seed=1)


def _bmd(phantom, mask):
    cal = phantom.truth["calibration"]
    return (phantom.volume.array_kji[mask].mean() - cal["intercept_hu"]) / cal[
        "slope_hu_per_mg_cm3"]


def _local_coordinates(phantom, mask, truth):
    """ROI voxel centres in the true body frame (u side, v anterior, w axis), mm."""
    volume = phantom.volume
    ras = volume.ijk_to_ras_points(np.argwhere(mask)[:, ::-1]) - truth["body_center_ras_mm"]
    frame = np.column_stack([truth["body_lr_axis_ras"], truth["body_ap_axis_ras"],
                             truth["body_axis_ras"]])
    return ras @ frame


def test_phantom_roi_accuracy_precision_axis_and_margins(phantom):
    volume = phantom.volume
    half_voxel_mm = 0.5 * volume.spacing_mm.min()
    for truth in phantom.truth["vertebrae"]:
        center = np.array(truth["body_center_ras_mm"])
        bmds = []
        for offset in OFFSETS_MM:
            body = delineate_body_from_seed(volume, center + offset, truth["level"])
            roi = place_roi(volume, body)
            axis_error_deg = np.degrees(np.arccos(min(1.0, abs(body.axis_ras
                                                              @ truth["body_axis_ras"]))))
            assert axis_error_deg < 2.0, (truth["level"], axis_error_deg)
            assert roi.thickness_mm == 9.0
            uvw = _local_coordinates(phantom, roi.mask_kji, truth)
            semi_u, semi_v = truth["trabecular_semi_axes_mm"]
            radial = np.hypot(uvw[:, 0] / semi_u, uvw[:, 1] / semi_v) * min(semi_u, semi_v)
            assert radial.max() <= min(semi_u, semi_v) - 2.0 + half_voxel_mm
            assert np.abs(uvw[:, 2]).max() <= truth["trabecular_height_mm"] / 2 - 2.0 + 0.5
            # vein rule: the ellipse lies anterior of the body's centre line
            assert uvw[:, 1].mean() > 2.0
            assert uvw[:, 1].min() > -semi_v / 3.0
            bmds.append(_bmd(phantom, roi.mask_kji))
        bmds = np.array(bmds)
        truth_bmd = truth["trabecular_bmd_mg_cm3"]
        tolerance = 1.5 if truth_bmd <= 50.0 else 0.02 * truth_bmd
        assert np.abs(bmds - truth_bmd).max() <= tolerance, (truth["level"], bmds)
        assert bmds.std(ddof=1) / bmds.mean() < 0.01


def test_phantom_trabecular_3d(phantom):
    truth = phantom.truth["vertebrae"][1]
    body = delineate_body_from_seed(phantom.volume, truth["body_center_ras_mm"], truth["level"])
    # what the delineation decided, for QC; the masks on the whole grid match the boxed ones
    assert body.ball_radius_mm in BALL_RADII_MM
    trabecular_hu = phantom.volume.array_kji[body.trabecular_mask_kji]
    assert np.median(trabecular_hu) < body.threshold_hu < np.percentile(phantom.volume.array_kji,
                                                                          99.9)
    assert body.trabecular_mask_kji.sum() == body.trabecular_in_box.sum() > 0
    assert body.body_mask_kji[body.box_kji].sum() == body.body_mask_kji.sum()
    assert not (body.trabecular_mask_kji & ~body.body_mask_kji).any()
    roi = place_roi(phantom.volume, body, kind="trabecular-3d")
    assert roi.semi_axes_mm is None and roi.thickness_mm is None
    assert roi.mask_kji[roi.box_kji].sum() == roi.mask_kji.sum() > 0
    assert abs(_bmd(phantom, roi.mask_kji) / truth["trabecular_bmd_mg_cm3"] - 1.0) < 0.02
    uvw = _local_coordinates(phantom, roi.mask_kji, truth)
    semi = min(truth["trabecular_semi_axes_mm"])
    assert np.hypot(uvw[:, 0], uvw[:, 1]).max() <= semi - 2.0 + 0.35


@pytest.fixture(scope="module")
def tptbox(real_data_dir):
    folder = real_data_dir / "tptbox_L3"
    return (load_ct(folder / "sub-ct_label-22_ct.nii.gz"),
            load_ct(folder / "sub-ct_seg-vert_label-22_msk.nii.gz"),
            load_ct(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz"))


@pytest.fixture(scope="module")
def tptbox_body_from_label(tptbox):
    ct, vertebrae, _ = tptbox
    return body_from_label(ct, vertebrae, 22, "L3")


def test_real_ct_roi_in_body_interior_from_label_and_seeds(tptbox, tptbox_body_from_label):
    ct, vertebrae, subregions = tptbox
    interior = (subregions.array_kji == 50) & (vertebrae.array_kji == 22)
    roi = place_roi(ct, tptbox_body_from_label)
    assert (subregions.array_kji[roi.mask_kji] == 50).mean() >= 0.98
    centroid = ct.ijk_to_ras_points(np.argwhere(interior)[:, ::-1]).mean(axis=0)
    for offset in ([0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, -4], [-3, -3, 0]):
        body = delineate_body_from_seed(ct, centroid + np.array(offset, float), "L3")
        roi = place_roi(ct, body)
        assert roi.mask_kji.sum() > 300
        assert (subregions.array_kji[roi.mask_kji] == 50).mean() >= 0.98


def test_real_ct_trabecular_3d_from_label(tptbox, tptbox_body_from_label):
    """The whole-interior ROI stays in the body interior (VerSe subregion 50), off the
    cortex and border band (49), and the trabecular interior within the vertebra's label."""
    ct, vertebrae, subregions = tptbox
    body = tptbox_body_from_label
    assert (vertebrae.array_kji[body.trabecular_mask_kji] == 22).all()
    roi = place_roi(ct, body, kind="trabecular-3d")
    assert roi.mask_kji.sum() > 1000
    assert (subregions.array_kji[roi.mask_kji] == 50).mean() >= 0.98


def test_label_on_another_grid(tptbox):
    ct, vertebrae, subregions = tptbox
    # the labels resampled (nearest neighbour) onto an axial 1 mm grid, then back onto the CT
    image = volume_to_sitk(vertebrae)
    reference = sitk.Image([120, 80, 120], image.GetPixelID())
    reference.SetSpacing([1.0, 1.0, 1.0])
    reference.SetOrigin(np.array(image.TransformContinuousIndexToPhysicalPoint(
        [36.0, 23.0, 36.0])) - [60.0, 40.0, 60.0])
    moved = volume_from_sitk(sitk.Resample(image, reference, sitk.Transform(),
                                           sitk.sitkNearestNeighbor, 0))
    assert moved.array_kji.shape != vertebrae.array_kji.shape
    roi = place_roi(ct, body_from_label(ct, moved, 22, "L3"))
    assert (subregions.array_kji[roi.mask_kji] == 50).mean() >= 0.98


def test_errors(phantom):
    volume = phantom.volume
    l1, l2 = (np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"][:2])
    with pytest.raises(SpineError, match="outside the scan"):
        delineate_body_from_seed(volume, l1 + [0, 0, 200.0], "L1")
    with pytest.raises(SpineError, match="L2.*Move it into the body"):
        delineate_body_from_seed(volume, l2 + [0, 35.0, 0], "L2")  # soft tissue
    with pytest.raises(SpineError, match="Move it into the body"):
        delineate_body_from_seed(volume, (l1 + l2) / 2.0, "L1")  # disc
    with pytest.raises(SpineError, match="absent"):
        body_from_label(volume, phantom.labels, 99, "L1")
    cut_k = int(round(volume.ras_to_ijk_points(l1)[0, 2])) + 2
    cut = Volume(volume.array_kji[:cut_k].copy(), volume.ijk_to_ras)
    with pytest.raises(SpineError, match="cut by the end of the scan"):
        delineate_body_from_seed(cut, l1, "L1")
