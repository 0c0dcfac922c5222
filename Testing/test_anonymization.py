"""--anonymize follows its stated profile: nothing identifying in any output file or on stderr,
UIDs replaced by hashed UIDs that still tell one series from another."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pydicom
import pypdf
import pytest

from boneqct.io.dicom import ANONYMIZATION_PROFILE, hashed_uid
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.volume import Volume

#: Identifying values written into the headers; none may appear in the outputs.
IDENTITY = {"PatientName": "DOE^JANE", "PatientID": "MRN-4711", "PatientBirthDate": "19500102",
            "InstitutionName": "St Elsewhere Hospital", "StationName": "CTSTATION7",
            "DeviceSerialNumber": "SN-998877", "StudyDescription": "Spine for Jane Doe",
            "SeriesDescription": "Jane Doe 1mm", "StudyDate": "20240315"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A DICOM folder holding the phantom (two series, so the loader names its choice) with
    identity in every header, and an L2 seed."""
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=40), seed=5)
    folder = tmp_path_factory.mktemp("study")
    write_dicom_series(phantom.volume, folder / "a", series_number=1)
    small = Volume(phantom.volume.array_kji[:5].copy(), phantom.volume.ijk_to_ras)
    write_dicom_series(small, folder / "b", series_number=2)
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in IDENTITY.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    l2 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    series_uid = str(pydicom.dcmread(next((folder / "a").glob("*.dcm"))).SeriesInstanceUID)
    return folder, "L2=" + ",".join(f"{x:.2f}" for x in l2["body_center_ras_mm"]), series_uid


def _texts(folder):
    """Every output file as text (gzip unpacked, PDF text extracted)."""
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        if path.suffix == ".pdf":
            yield path.name, " ".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
        else:
            yield path.name, data.decode("latin-1")


def test_anonymized_spine_run_leaks_nothing(study, tmp_path):
    folder, seed, series_uid = study
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "spine", str(folder), "--out",
                          str(out), "--seed", seed, "--phantom", "mindways-model3",
                          "--anonymize"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    secrets = list(IDENTITY.values()) + ["Jane", "1950-01-02", "2024-03-15", series_uid]
    for name, text in [("stdout", run.stdout), ("stderr", run.stderr), *_texts(out)]:
        for secret in secrets:
            assert secret not in text, (name, secret)
    assert "using [removed]" in run.stderr  # the loader's choice of series, scrubbed
    exam = json.loads((out / "spine.json").read_text())["exam"]
    assert exam["anonymization"]["profile"] == ANONYMIZATION_PROFILE
    assert exam["series_uid"] == hashed_uid(series_uid) != series_uid
    assert exam["patient_sex"] is not None or "patient_sex" in exam  # characteristics kept


def test_info_anonymize_lists_series_without_uids_or_descriptions(study):
    folder, _, series_uid = study
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "info", str(folder), "--json",
                          "--anonymize"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for secret in list(IDENTITY.values()) + [series_uid]:
        assert secret not in run.stdout and secret not in run.stderr, secret
    info = json.loads(run.stdout)
    assert len(info["series"]) == 2
    assert all(s["series_uid"].startswith("2.25.") for s in info["series"])
    assert np.unique([s["series_uid"] for s in info["series"]]).size == 2
