"""Hostile and damaged input files are refused with a message, never read as wrong numbers or
left to hang: NaN/infinite voxels, truncated compressed volumes, pipes and dangling links,
DICOM rescale values that cannot give HU, DICOM headers whose size, spacing, orientation,
position, rescale or bit depth cannot describe a CT (exit 2, the tag and value named, no
patient identity), while rounding in the cosines and a real gantry tilt are still read."""

from __future__ import annotations

import json
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


# --- DICOM headers that cannot describe a CT: refused at the header, exit 2, by tag and value --

#: A name and ID that must never reach a message (stand-ins for a patient's identity).
_NAME, _ID = "Hostile^Patientname", "REC-98765"


def _hostile_series(folder, edit):
    """The 12-slice 20 x 24 series of ``_volume`` with a name and ID, ``edit(ds, index)``
    applied to every file."""
    write_dicom_series(_volume(np.int16), folder)
    for index, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = _NAME, _ID
        edit(ds, index)
        ds.save_as(path, enforce_file_format=False)
    return folder


def _tag(keyword, value, only=None):
    def edit(ds, index):
        if only is None or index == only:
            setattr(ds, keyword, value)
    return edit


def _info(folder, capsys):
    from boneqct.cli import main

    code = main(["info", str(folder), "--json"])
    out, err = capsys.readouterr()
    return code, out, err


_REEXPORT = "Re-export the series from the scanner or PACS"

#: (case, edit, fragments the message must hold), one per class of damaged header.
HOSTILE_HEADERS = [
    ("Rows 1", _tag("Rows", 1), ["Rows is '1'", "at least 2 pixels a side", _REEXPORT]),
    ("Columns 1", _tag("Columns", 1), ["Columns is '1'", "at least 2 pixels a side"]),
    ("Rows 3 (pixel data of 20 rows)", _tag("Rows", 3),
     ["truncated or corrupt", "holds 960 bytes", "Rows 3, Columns 24", "describes 144",
      _REEXPORT]),
    ("PixelSpacing 0", _tag("PixelSpacing", [0, 0]),
     ["PixelSpacing is '0.0\\0.0'", "between 0.001 and 20 mm", _REEXPORT]),
    ("PixelSpacing negative (would mirror)", _tag("PixelSpacing", [-0.8, 0.8]),
     ["PixelSpacing is '-0.8\\0.8'", "mirror the image"]),
    ("PixelSpacing 1e9", _tag("PixelSpacing", [1e9, 1e9]),
     ["PixelSpacing is '1000000000.0\\1000000000.0'", "between 0.001 and 20 mm"]),
    ("PixelSpacing nan", _tag("PixelSpacing", ["nan", "nan"]),
     ["PixelSpacing is 'nan\\nan'", "2 finite numbers"]),
    ("orientation 60 degrees (not a gantry tilt)",
     _tag("ImageOrientationPatient", [1, 0, 0, 0.5, 0.866, 0]),
     ["ImageOrientationPatient is '1.0\\0.0\\0.0\\0.5\\0.866\\0.0'", "60.0 degrees apart",
      "gantry tilt tilts the slice direction", _REEXPORT]),
    ("orientation zeros", _tag("ImageOrientationPatient", [0] * 6),
     ["ImageOrientationPatient is '0.0\\0.0\\0.0\\0.0\\0.0\\0.0'", "lengths 0 and 0, not 1"]),
    ("orientation nan", _tag("ImageOrientationPatient", ["nan"] * 6),
     ["ImageOrientationPatient is 'nan\\nan", "6 finite numbers"]),
    ("orientation of five values", _tag("ImageOrientationPatient", [1, 0, 0, 0, 1]),
     ["ImageOrientationPatient is '1.0\\0.0\\0.0\\0.0\\1.0'", "6 finite numbers"]),
    ("position nan", _tag("ImagePositionPatient", ["nan", 0, 0]),
     ["ImagePositionPatient is 'nan\\0.0\\0.0' (in every file)", "3 finite numbers"]),
    ("position nan in one file", _tag("ImagePositionPatient", [0, 0, "nan"], only=3),
     ["ImagePositionPatient is '0.0\\0.0\\nan' (in 1 of 12 files)"]),
    ("RescaleSlope 1e30", _tag("RescaleSlope", "1e30"),
     ["RescaleSlope is '1e30'", "not a CT rescale", "between 0.01 and 100", _REEXPORT]),
    ("RescaleSlope 0.0001", _tag("RescaleSlope", "0.0001"), ["RescaleSlope is '0.0001'"]),
    ("BitsStored 20 of 16", _tag("BitsStored", 20),
     ["BitsStored is '20'", "between 1 and BitsAllocated (16)"]),
    ("PixelRepresentation 7", _tag("PixelRepresentation", 7),
     ["PixelRepresentation is '7'", "0 (unsigned) or 1 (signed)", _REEXPORT]),
]


@pytest.mark.parametrize(("edit", "fragments"), [
    pytest.param(edit, fragments, id=case) for case, edit, fragments in HOSTILE_HEADERS])
def test_damaged_dicom_header_is_refused_by_tag_and_value(tmp_path, capsys, edit, fragments):
    folder = _hostile_series(tmp_path / "series", edit)
    code, out, err = _info(folder, capsys)
    assert code == 2, out
    assert out == "" and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert _NAME.split("^")[0] not in err and _ID not in err  # no patient identity


def test_non_finite_header_numbers_become_null_in_the_metadata(tmp_path, capsys):
    """SliceThickness NaN (and KVP inf) harm nothing but cannot be JSON: they become null."""
    def edit(ds, index):
        ds.SliceThickness, ds.KVP = "nan", "inf"

    code, out, err = _info(_hostile_series(tmp_path / "series", edit), capsys)
    assert code == 0, err
    info = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert info["metadata"]["slice_thickness_mm"] is None
    assert info["metadata"]["kvp"] is None
    assert info["metadata"]["pixel_spacing_mm"] == [0.8, 0.8]


def test_rounded_and_scaled_orientation_cosines_are_read(tmp_path):
    """An in-plane rotation written with 4 and 3 decimals (lengths and right angle off by
    5e-4) and cosines 0.5 % too long are rounding: normalised and read, not refused."""
    angle = np.radians(25.0)
    row = np.round([np.cos(angle), np.sin(angle), 0.0], 4)
    column = np.round([-np.sin(angle), np.cos(angle), 0.0], 3)
    assert 0 < abs(float(row @ column)) < 1e-3
    cosines = np.concatenate([row, column]) * 1.005
    folder = _hostile_series(tmp_path / "series",
                             _tag("ImageOrientationPatient", [float(v) for v in cosines]))
    loaded = load_ct(folder)
    d = loaded.direction_ras
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-9)
    assert abs(float(d[:, 0] @ d[:, 1])) < 1e-3


def test_gantry_tilt_is_still_resampled_not_refused(tmp_path):
    """A real gantry tilt: perpendicular rows and columns, slice positions shifted along y
    (10 degrees); read with a warning, unlike a sheared image plane (refused above)."""
    shift_mm = 2.0 * np.tan(np.radians(10.0))

    def edit(ds, index):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + index * shift_mm, z]

    loaded = load_ct(_hostile_series(tmp_path / "series", edit))
    assert loaded.metadata["gantry_tilt_deg"] == pytest.approx(10.0, abs=0.01)
    assert any("gantry tilt of 10.00 degrees" in w for w in loaded.warnings)
