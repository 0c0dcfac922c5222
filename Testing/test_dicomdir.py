"""DICOM CD/USB exports: a folder with a DICOMDIR index and the images in subfolders is read as
the same volume as the plain series; a damaged index, pipes and dangling links beside the
images do not block them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from boneqct.errors import InputError
from boneqct.io import load_ct
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.volume import Volume


def _volume() -> Volume:
    array = np.random.default_rng(1).normal(40.0, 10.0, (9, 20, 24)).astype(np.int16)
    array[:, :3] = -1000
    return Volume(array, np.diag([0.7, 0.7, 1.5, 1.0]))


@pytest.fixture
def export(tmp_path):
    """(plain series folder, CD-style export of it written by pydicom's FileSet)."""
    series = tmp_path / "series"
    files = write_dicom_series(_volume(), series)
    file_set = FileSet()
    for path in files:
        file_set.add(str(path))
    file_set.write(str(tmp_path / "export"))
    return series, tmp_path / "export"


def _assert_same(loaded: Volume, reference: Volume) -> None:
    np.testing.assert_array_equal(loaded.array_kji, reference.array_kji)
    np.testing.assert_allclose(loaded.ijk_to_ras, reference.ijk_to_ras)


def test_the_export_is_a_dicomdir_with_the_images_in_subfolders(export):
    _, folder = export
    assert (folder / "DICOMDIR").is_file()
    assert not [p for p in folder.iterdir() if p.is_file() and p.name != "DICOMDIR"]
    assert len([p for p in folder.rglob("*") if p.is_file()]) == 10  # index + 9 images
    index = pydicom.dcmread(folder / "DICOMDIR")
    assert len(index.DirectoryRecordSequence) > 0


def test_export_reads_as_the_plain_series(export):
    series, folder = export
    reference = load_ct(series)
    _assert_same(load_ct(folder), reference)
    _assert_same(load_ct(folder / "DICOMDIR"), reference)  # the index itself may be given
    np.testing.assert_array_equal(reference.array_kji, _volume().array_kji)


def test_a_damaged_dicomdir_does_not_block_the_images(export):
    series, folder = export
    index = folder / "DICOMDIR"
    index.write_bytes(index.read_bytes()[:132] + b"\xff" * 64)  # preamble, then garbage
    damaged = folder.parent / "damaged.dcm"
    damaged.write_bytes(index.read_bytes())
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_ct([damaged])  # the damage is real: read as an image file, it is refused
    _assert_same(load_ct(folder), load_ct(series))


def test_an_index_under_another_name_is_recognised_and_skipped(export):
    series, folder = export
    (folder / "PT000000" / "INDEX").write_bytes((folder / "DICOMDIR").read_bytes())
    _assert_same(load_ct(folder), load_ct(series))


def test_pipes_and_dangling_links_beside_the_index_are_skipped(export):
    series, folder = export
    images = next(p for p in folder.rglob("SE*") if p.is_dir())
    os.mkfifo(images / "PIPE")
    os.symlink(folder / "gone", images / "DANGLING")
    _assert_same(load_ct(folder), load_ct(series))


def test_info_command_lists_the_series_of_an_export(export):
    _, folder = export
    done = subprocess.run([sys.executable, "-m", "boneqct.cli", "info", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CT axial, 9 slices" in done.stdout and "size (i, j, k): [24, 20, 9]" in done.stdout
