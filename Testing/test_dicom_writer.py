"""DICOM series writer: geometry and voxel values survive a round trip through two readers."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from boneqct.io.dicom_writer import write_dicom_series
from boneqct.volume import LPS_TO_RAS, Volume, ijk_to_ras_matrix

ORIGIN_RAS_MM = (12.5, -30.25, -101.0)
SPACING_MM = (0.7, 0.9, 2.5)
AXIAL_DIRECTION_RAS = np.diag([-1.0, -1.0, 1.0])  # i -> patient left, j -> posterior


def _volume(size_ijk=(7, 5, 4)) -> Volume:
    """An asymmetric volume spanning air to dense bone (HU); values distinct up to 3000 voxels."""
    ni, nj, nk = size_ijk
    array_kji = (np.arange(ni * nj * nk).reshape(nk, nj, ni) * 37 % 3000 - 1100).astype(np.int16)
    matrix = ijk_to_ras_matrix(ORIGIN_RAS_MM, SPACING_MM, AXIAL_DIRECTION_RAS)
    return Volume(array_kji, matrix, {"kvp": 120, "exposure_mas": 150, "convolution_kernel": "B30f",
                                      "patient_id": "P7", "study_date": "2024-02-29"})


def _read_sitk(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    ijk_to_lps = np.eye(4)
    spacing = np.array(image.GetSpacing())
    ijk_to_lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * spacing
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image), LPS_TO_RAS @ ijk_to_lps


def test_simpleitk_reads_back_values_and_geometry(tmp_path):
    volume = _volume()
    paths = write_dicom_series(volume, tmp_path, uid_seed="test")
    assert len(paths) == 4
    array_kji, ijk_to_ras = _read_sitk(tmp_path)
    np.testing.assert_array_equal(array_kji, volume.array_kji)
    np.testing.assert_allclose(ijk_to_ras, volume.ijk_to_ras, atol=1e-5)


def test_pydicom_reads_back_attributes(tmp_path):
    volume = _volume()
    paths = write_dicom_series(volume, tmp_path, uid_seed="test", series_description="unit")
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT" and ds.Manufacturer == "BoneQCT"
        assert ds.PatientName == "PHANTOM^DIGITAL" and ds.InstanceNumber == k + 1
        assert ds.PatientID == "P7" and ds.StudyDate == "20240229"
        assert float(ds.KVP) == 120 and ds.Exposure == 150 and ds.ConvolutionKernel == "B30f"
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, volume.array_kji[k])
        position_ras = LPS_TO_RAS[:3, :3] @ np.array(ds.ImagePositionPatient, float)
        np.testing.assert_allclose(position_ras, volume.ijk_to_ras_points([0, 0, k])[0], atol=1e-5)
        np.testing.assert_allclose(ds.ImageOrientationPatient, [1, 0, 0, 0, 1, 0], atol=1e-7)
        np.testing.assert_allclose(ds.PixelSpacing, [SPACING_MM[1], SPACING_MM[0]])
        assert float(ds.SpacingBetweenSlices) == pytest.approx(SPACING_MM[2])
    series_uids = {pydicom.dcmread(p).SeriesInstanceUID for p in paths}
    assert len(series_uids) == 1


def test_uid_seed_is_reproducible(tmp_path):
    volume = _volume()
    first = write_dicom_series(volume, tmp_path / "a", uid_seed="same")
    second = write_dicom_series(volume, tmp_path / "b", uid_seed="same")
    fresh = write_dicom_series(volume, tmp_path / "c")
    uid = [pydicom.dcmread(p[0]).SOPInstanceUID for p in (first, second, fresh)]
    assert uid[0] == uid[1] != uid[2]


@pytest.mark.parametrize("syntax, uid", [("rle", pydicom.uid.RLELossless),
                                         ("jpeg2000-lossless", pydicom.uid.JPEG2000Lossless)])
def test_compressed_series_decode_to_the_same_values(tmp_path, syntax, uid):
    volume = _volume((40, 34, 3))  # JPEG 2000 needs >= 32 pixels per side
    paths = write_dicom_series(volume, tmp_path, transfer_syntax=syntax)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == uid
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu, volume.array_kji[k])
    array_kji, _ = _read_sitk(tmp_path)
    np.testing.assert_array_equal(array_kji, volume.array_kji)


def test_existing_series_is_not_mixed_in(tmp_path):
    volume = _volume()
    write_dicom_series(volume, tmp_path)
    with pytest.raises(FileExistsError):
        write_dicom_series(volume, tmp_path)
    shorter = Volume(volume.array_kji[:2], volume.ijk_to_ras)
    assert len(write_dicom_series(shorter, tmp_path, overwrite=True)) == 2
    assert len(list(tmp_path.glob("*.dcm"))) == 2


def test_out_of_range_values_are_refused(tmp_path):
    volume = _volume()
    with pytest.raises(ValueError):
        write_dicom_series(volume.with_array(volume.array_kji.astype(np.int32) + 40000), tmp_path)
