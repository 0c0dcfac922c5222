"""CT input/output: DICOM and volume files, geometry, HU, and every bad-input error."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from boneqct.errors import InputError
from boneqct.io import find_series, load_ct, read_volume_file, write_volume
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.io.images import volume_to_sitk
from boneqct.volume import (
    Volume,
    lps_to_ras,
    stated_slice_thickness_mm,
    with_stated_slice_thickness,
)


def _asymmetric_volume(shape_kji=(6, 7, 9), oblique=True) -> Volume:
    """Distinct HU per voxel, anisotropic spacing, a rotated direction and an offset origin."""
    rng = np.random.default_rng(3)
    array = rng.integers(-1000, 2000, size=shape_kji).astype(np.int16)
    angle = np.radians(20.0) if oblique else 0.0
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1.0]])
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag([0.7, 0.9, 2.5])
    m[:3, 3] = [12.5, -40.25, 101.0]
    return Volume(array, m)


@pytest.fixture
def series_dir(tmp_path):
    """A small axial CT series written by the project's DICOM writer."""
    volume = _asymmetric_volume(oblique=False)
    folder = tmp_path / "series"
    write_dicom_series(volume, folder)
    return volume, folder


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


# --- volume files and geometry ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_volume_file_round_trip_preserves_geometry_and_values(tmp_path, suffix):
    volume = _asymmetric_volume()
    path = write_volume(volume, tmp_path / f"v{suffix}")
    back = read_volume_file(path)
    np.testing.assert_array_equal(back.array_kji, volume.array_kji)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-5)


def test_lps_file_geometry_becomes_ras(tmp_path):
    """A bright voxel at a known LPS position is found at the mirrored RAS position."""
    array = np.zeros((4, 5, 6), np.int16)
    array[3, 1, 4] = 1000  # k=3, j=1, i=4
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.8, 3.0))
    image.SetOrigin((-20.0, 30.0, 5.0))
    angle = np.radians(15)
    direction = [np.cos(angle), 0, np.sin(angle), 0, 1, 0, -np.sin(angle), 0, np.cos(angle)]
    image.SetDirection(direction)
    sitk.WriteImage(image, str(tmp_path / "asym.nrrd"))
    point_lps = np.array(image.TransformIndexToPhysicalPoint((4, 1, 3)))

    volume = load_ct(tmp_path / "asym.nrrd")
    k, j, i = np.unravel_index(np.argmax(volume.array_kji), volume.array_kji.shape)
    assert (i, j, k) == (4, 1, 3)  # voxel order kept, nothing reoriented
    np.testing.assert_allclose(volume.ijk_to_ras_points([4, 1, 3])[0], lps_to_ras(point_lps),
                               atol=1e-9)
    np.testing.assert_allclose(volume.ras_to_ijk_points(lps_to_ras(point_lps))[0], [4, 1, 3],
                               atol=1e-9)


# --- DICOM --------------------------------------------------------------------------------------


def test_dicom_series_loads_with_written_geometry_and_hu(series_dir):
    volume, folder = series_dir
    loaded = load_ct(folder)
    np.testing.assert_array_equal(loaded.array_kji, volume.array_kji)
    np.testing.assert_allclose(loaded.ijk_to_ras, volume.ijk_to_ras, atol=1e-4)
    assert loaded.metadata["modality"] == "CT"
    assert loaded.metadata["series_uid"]
    assert loaded.warnings == []


def test_dicom_slices_sorted_by_position_not_instance_number(series_dir):
    volume, folder = series_dir
    for path in _files(folder):  # reverse instance numbers and rename in a scrambled order
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 100 - int(ds.InstanceNumber)
        ds.save_as(path)
        path.rename(folder / f"z{int(ds.InstanceNumber) * 7 % 13:03d}_{path.name}")
    loaded = load_ct(folder)
    np.testing.assert_array_equal(loaded.array_kji, volume.array_kji)
    np.testing.assert_allclose(loaded.ijk_to_ras, volume.ijk_to_ras, atol=1e-4)


def test_dicom_agrees_with_simpleitk_series_reader(series_dir):
    _, folder = series_dir
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    ours = load_ct(folder)
    np.testing.assert_array_equal(ours.array_kji, sitk.GetArrayFromImage(image))
    corner_lps = np.array(image.TransformIndexToPhysicalPoint((1, 2, 3)))
    np.testing.assert_allclose(ours.ijk_to_ras_points([1, 2, 3])[0], lps_to_ras(corner_lps),
                               atol=1e-4)


@pytest.mark.parametrize("syntax", ["jpeg2000-lossless", "rle"])
def test_compressed_series_decodes_to_same_hu(tmp_path, syntax):
    volume = _asymmetric_volume((5, 34, 36), oblique=False)  # JPEG 2000 needs >= 32 x 32
    write_dicom_series(volume, tmp_path / "plain")
    write_dicom_series(volume, tmp_path / "compressed", transfer_syntax=syntax)
    ds = pydicom.dcmread(_files(tmp_path / "compressed")[0])
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    plain = load_ct(tmp_path / "plain")
    compressed = load_ct(tmp_path / "compressed")
    np.testing.assert_array_equal(compressed.array_kji, plain.array_kji)
    np.testing.assert_allclose(compressed.ijk_to_ras, plain.ijk_to_ras, atol=1e-6)


def test_jpeg_ls_series_decodes_to_same_hu(tmp_path):
    volume = _asymmetric_volume((4, 34, 36), oblique=False)
    files = write_dicom_series(volume, tmp_path / "jls")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.JPEGLSLossless, encoding_plugin="pyjpegls")
        ds.save_as(path)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    np.testing.assert_array_equal(load_ct(tmp_path / "jls").array_kji, volume.array_kji)


def test_rescale_slope_and_intercept_are_applied(series_dir):
    volume, folder = series_dir
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.RescaleSlope = 0.5
        ds.RescaleIntercept = float(ds.RescaleIntercept) * 0.5 - 10.0
        ds.save_as(path)
    loaded = load_ct(folder)
    np.testing.assert_allclose(loaded.array_kji, volume.array_kji * 0.5 - 10.0, atol=1e-3)


def test_hu_beyond_int16_come_back_as_float(series_dir):
    volume, folder = series_dir
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.RescaleIntercept = float(ds.RescaleIntercept) + 40000.0
        ds.save_as(path)
    loaded = load_ct(folder)
    assert loaded.array_kji.dtype == np.float32
    np.testing.assert_array_equal(loaded.array_kji, volume.array_kji.astype(np.float64) + 40000.0)


def test_folder_with_two_series_takes_largest_axial_ct_and_says_so(tmp_path):
    big = _asymmetric_volume((6, 7, 9), oblique=False)
    small = _asymmetric_volume((3, 7, 9), oblique=False)
    write_dicom_series(big, tmp_path / "a", series_description="big")
    write_dicom_series(small, tmp_path / "b", series_description="small")
    series = find_series(tmp_path)
    assert [s.n_slices for s in series] == [6, 3]
    loaded = load_ct(tmp_path)
    assert loaded.size_ijk == (9, 7, 6)
    assert "holds 2 series" in loaded.warnings[0] and "--series" in loaded.warnings[0]
    chosen = load_ct(tmp_path, series_uid=series[1].series_uid)
    assert chosen.size_ijk == (9, 7, 3)


def test_exam_metadata_has_report_fields(series_dir):
    _, folder = series_dir
    metadata = load_ct(folder).metadata
    for key in ("patient_name", "patient_id", "patient_sex", "patient_birth_date",
                "patient_age_years", "study_date", "manufacturer", "model", "kvp",
                "exposure_mas", "slice_thickness_mm", "pixel_spacing_mm", "convolution_kernel",
                "series_uid", "study_uid"):
        assert key in metadata


@pytest.mark.parametrize("form", ["dicom", "mha"])
def test_gantry_tilt_is_resampled_to_an_orthogonal_grid(tmp_path, form):
    """Slices shifted along y as k grows (tilted gantry): a bright block stays where it is.
    An MHA file keeps the sheared axes (DICOM only the slice positions): read as they were,
    the outputs written through ITK on its grid landed 23-25 mm off (adversarial review)."""
    shape = (12, 40, 40)
    tilt_deg = 15.0
    step_mm = 2.0
    m = np.eye(4)
    m[:3, :3] = np.diag([1.0, 1.0, step_mm])
    m[1, 2] = step_mm * np.tan(np.radians(tilt_deg))  # sheared k axis in RAS
    m[:3, 3] = [-20.0, -20.0, 0.0]
    tilted = Volume(np.full(shape, -1000, np.int16), m)
    block_ras = np.array([0.0, 2.0, 11.0])
    kk, jj, ii = np.indices(shape)
    ras = tilted.ijk_to_ras_points(np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1))
    inside = np.all(np.abs(ras - block_ras) <= [6.0, 6.0, 6.0], axis=1).reshape(shape)
    tilted.array_kji[inside] = 1000
    if form == "mha":
        source = tmp_path / "tilted.mha"
        sitk.WriteImage(volume_to_sitk(tilted), str(source))
    else:
        # The writer accepts orthogonal grids only: write the slices, then shift each slice's
        # position as a tilted gantry does (RAS +y is LPS -y).
        orthogonal = m.copy()
        orthogonal[1, 2] = 0.0
        source = tmp_path / "tilted"
        files = write_dicom_series(Volume(tilted.array_kji, orthogonal), source)
        for k, path in enumerate(files):
            ds = pydicom.dcmread(path)
            position = [float(v) for v in ds.ImagePositionPatient]
            position[1] -= k * m[1, 2]
            ds.ImagePositionPatient = position
            ds.save_as(path)

    loaded = load_ct(source)
    assert "gantry tilt of 15.00 degrees" in loaded.warnings[-1]
    assert loaded.metadata["gantry_tilt_deg"] == pytest.approx(tilt_deg, abs=0.01)
    d = loaded.direction_ras
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)  # orthogonal grid
    bright = np.argwhere(loaded.array_kji > 0)[:, ::-1]
    centroid_ras = loaded.ijk_to_ras_points(bright).mean(axis=0)
    np.testing.assert_allclose(centroid_ras, block_ras, atol=0.6)


# --- bad input: each case names the problem ---------------------------------------------------


def _expect_error(source, *fragments, **kwargs):
    with pytest.raises(InputError) as info:
        load_ct(source, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_error_no_image_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    _expect_error(tmp_path, "No DICOM image files")


def test_error_non_ct_modality(series_dir):
    _, folder = series_dir
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)
    _expect_error(folder, "modality 'MR', not CT")


def test_error_mixed_series_in_file_list(tmp_path):
    write_dicom_series(_asymmetric_volume(oblique=False), tmp_path / "a")
    write_dicom_series(_asymmetric_volume(oblique=False), tmp_path / "b")
    files = _files(tmp_path / "a")[:3] + _files(tmp_path / "b")[:3]
    _expect_error(files, "mixed series")


def test_error_missing_slices(series_dir):
    _, folder = series_dir
    by_position = sorted(_files(folder), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_position[3].unlink()
    _expect_error(folder, "missing slices", "between slices 2 and 3")


def test_error_inconsistent_orientation(series_dir):
    _, folder = series_dir
    path = _files(folder)[2]
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, -0.6]
    ds.save_as(path)
    _expect_error(folder, "different orientations")


def test_error_inconsistent_pixel_spacing(series_dir):
    _, folder = series_dir
    path = _files(folder)[2]
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [0.5, 0.5]
    ds.save_as(path)
    _expect_error(folder, "different pixel spacings")


def test_error_duplicate_slices(series_dir, tmp_path):
    _, folder = series_dir
    first = _files(folder)[0]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "duplicate.dcm")
    _expect_error(folder, "same position")


def test_error_truncated_file(series_dir):
    _, folder = series_dir
    path = _files(folder)[2]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    _expect_error(folder, "truncated or corrupt", path.name)


def test_error_corrupt_file(series_dir):
    _, folder = series_dir
    path = _files(folder)[1]
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    _expect_error(folder, "truncated or corrupt", path.name)


def test_error_single_2d_image(series_dir, tmp_path):
    _, folder = series_dir
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(_files(folder)[0], single / "one.dcm")
    _expect_error(single, "single 2D image")
    image = sitk.GetImageFromArray(np.zeros((8, 8), np.int16))
    sitk.WriteImage(image, str(tmp_path / "flat.nii.gz"))
    _expect_error(tmp_path / "flat.nii.gz", "single 2D image")


def test_error_unknown_series_lists_those_found(series_dir):
    _, folder = series_dir
    _expect_error(folder, "is not in the input", "slices", series_uid="1.2.3.4")


def test_error_missing_input(tmp_path):
    _expect_error(tmp_path / "nowhere", "does not exist")


def test_error_a_volume_file_among_several_inputs(tmp_path):
    """A CT and its label map given as two inputs (a first-timer's mistake: the labels go
    with --labels) name the problem; before, they read as 'no DICOM image files found'."""
    paths = []
    for name in ("ct.nii.gz", "labels.nii.gz"):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16)),
                        str(tmp_path / name))
        paths.append(tmp_path / name)
    _expect_error(paths, "2 inputs were given", "'ct.nii.gz' is a volume file", "--labels")


def test_real_ct_cutout_keeps_its_pir_voxel_order(real_data_dir):
    """The TPTBox L3 cut-out is stored PIR: loaded as stored, with SimpleITK's geometry in RAS."""
    path = real_data_dir / "tptbox_L3" / "sub-ct_label-22_ct.nii.gz"
    volume = load_ct(path)
    image = sitk.ReadImage(str(path))
    assert volume.size_ijk == image.GetSize() == (73, 47, 73)
    np.testing.assert_allclose(volume.spacing_mm, [1.5, 1.5, 1.5], atol=1e-4)
    np.testing.assert_array_equal(volume.array_kji, sitk.GetArrayFromImage(image))
    # i runs Posterior, j Inferior, k Right in RAS terms: -A, -S, +R
    axes_ras = volume.direction_ras
    assert np.argmax(np.abs(axes_ras[:, 0])) == 1 and axes_ras[1, 0] < 0
    assert np.argmax(np.abs(axes_ras[:, 1])) == 2 and axes_ras[2, 1] < 0
    assert np.argmax(np.abs(axes_ras[:, 2])) == 0 and axes_ras[0, 2] > 0
    far_corner_lps = np.array(image.TransformIndexToPhysicalPoint((72, 46, 72)))
    np.testing.assert_allclose(volume.ijk_to_ras_points([72, 46, 72])[0], lps_to_ras(far_corner_lps),
                               atol=1e-4)


def test_a_given_slice_thickness_is_stated_unless_impossible_or_contradicted():
    """``--slice-thickness`` for a volume file: the volume states it (what the endplate and
    partial-volume models read a voxel over), flagged as given, with a warning; the same as
    the scan's own changes nothing; another than the scan's, or one not possible for its
    spacing (not positive, not finite, over 3 times the spacing), is refused naming both; a
    header's thickness the models do not take (0 mm) is replaced, the warning naming it."""
    ijk_to_ras = np.diag([0.7, 0.7, 1.25, 1.0])
    plain = Volume(np.zeros((4, 3, 3), np.float32), ijk_to_ras, {})
    given = with_stated_slice_thickness(plain, 2.5)
    assert stated_slice_thickness_mm(given) == 2.5 and given.metadata["slice_thickness_given"]
    assert "2.5 mm as given by the user" in given.warnings[-1]
    assert stated_slice_thickness_mm(plain) is None  # the original is left as it was
    dicom = Volume(plain.array_kji, ijk_to_ras, {"slice_thickness_mm": 2.5})
    assert with_stated_slice_thickness(dicom, 2.5) is dicom
    with pytest.raises(InputError, match="states 2.5 mm slices .* and 1.25 mm was given"):
        with_stated_slice_thickness(dicom, 1.25)
    broken = Volume(plain.array_kji, ijk_to_ras, {"slice_thickness_mm": 0.0})  # not taken
    fixed = with_stated_slice_thickness(broken, 2.5)
    assert stated_slice_thickness_mm(fixed) == 2.5 and "header states 0.0" in fixed.warnings[-1]
    for impossible in (0.0, -1.0, float("nan"), float("inf"), 3.8):
        with pytest.raises(InputError, match="not possible for slices 1.25 mm apart"):
            with_stated_slice_thickness(plain, impossible)
