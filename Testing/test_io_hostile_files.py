"""Hostile and damaged input files are refused with a message, never read as wrong numbers or
left to hang: NaN/infinite voxels, truncated compressed volumes, pipes and dangling links,
DICOM rescale values that cannot give HU."""

from __future__ import annotations

import os
import threading

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from boneqct.errors import InputError
from boneqct.io import load_ct, write_volume
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.volume import Volume


def _volume(dtype=np.float32) -> Volume:
    array = np.random.default_rng(0).normal(40.0, 10.0, (12, 20, 24)).astype(dtype)
    array[:, :3] = -1000
    return Volume(array, np.diag([0.8, 0.8, 2.0, 1.0]))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_non_finite_voxels_are_refused_with_their_count(tmp_path, suffix):
    volume = _volume()
    volume.array_kji[3, 4, 5] = np.nan
    volume.array_kji[4, 5, 6] = np.inf
    volume.array_kji[5, 6, 7] = -np.inf
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(volume.array_kji), str(path))
    with pytest.raises(InputError, match="3 .*NaN or infinite"):
        load_ct(path)


def test_truncated_compressed_volume_is_refused(tmp_path):
    path = write_volume(_volume(np.int16), tmp_path / "ct.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_ct(path)


def test_truncated_uncompressed_volume_is_refused(tmp_path):
    path = tmp_path / "ct.nii"
    sitk.WriteImage(sitk.GetImageFromArray(_volume(np.int16).array_kji), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    with pytest.raises(InputError, match="bytes of voxel data"):
        load_ct(path)


def test_a_pipe_named_like_a_volume_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.nii.gz"
    os.mkfifo(fifo)
    outcome = {}

    def load():
        try:
            load_ct(fifo)
        except InputError as exc:
            outcome["message"] = str(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert "not a regular file" in outcome["message"]


def test_pipes_and_dangling_links_in_a_dicom_folder_are_skipped(tmp_path):
    volume = _volume(np.int16)
    folder = tmp_path / "series"
    write_dicom_series(volume, folder)
    os.mkfifo(folder / "pipe.dcm")
    os.symlink(tmp_path / "gone.dcm", folder / "dangling.dcm")
    loaded = load_ct(folder)
    np.testing.assert_array_equal(loaded.array_kji, volume.array_kji)


def _edit_series(folder, edit):
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda ds: setattr(ds, "RescaleSlope", "0"), "not a CT rescale"),
    (lambda ds: setattr(ds, "RescaleIntercept", "1e30"), "not a CT rescale"),
])
def test_impossible_rescale_is_refused(tmp_path, edit, message):
    folder = tmp_path / "series"
    write_dicom_series(_volume(np.int16), folder)
    _edit_series(folder, edit)
    with pytest.raises(InputError, match=message):
        load_ct(folder)


def test_missing_rescale_warns_or_is_refused_when_values_cannot_be_hu(tmp_path):
    folder = tmp_path / "series"
    volume = _volume(np.int16)
    write_dicom_series(volume, folder)

    def drop_rescale(ds):
        for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if keyword in ds:
                delattr(ds, keyword)

    _edit_series(folder, drop_rescale)
    loaded = load_ct(folder)
    if int(pydicom.dcmread(sorted(folder.glob("*.dcm"))[0]).PixelRepresentation) == 1:
        assert any("no RescaleSlope/RescaleIntercept" in w for w in loaded.warnings)
    _edit_series(folder, lambda ds: setattr(ds, "PixelRepresentation", 0))
    with pytest.raises(InputError, match="cannot be HU"):
        load_ct(folder)
