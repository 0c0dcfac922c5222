"""Files the user hands in - calibration, reference, spine.json for compare - are read
strictly and checked field by field: every malformed one is refused with a message naming the
field, none reaches a computation (issue 11, item 1)."""

from __future__ import annotations

import json

import pytest

from boneqct.calibration import manual_calibration
from boneqct.calibration.stored import read_calibration_file
from boneqct.errors import BoneQCTError
from boneqct.reference import load_reference
from boneqct.spine.followup import compare_exams


def _calibration_doc() -> dict:
    calibration = manual_calibration(1.25, -3.0, "K2HPO4")
    calibration.method = "phantom"
    calibration.r2 = 0.999
    calibration.rods = [{"name": "A", "density_mg_cm3": 50.0, "water_mg_cm3": 1000.0,
                         "measured_hu": 60.0, "residual_hu": 0.2, "residual_mg_cm3": 0.16}]
    calibration.per_slice = {"k": [0, 10], "slope_hu_per_mg_cm3": [1.2, 1.3],
                             "intercept_hu": [-3.0, -2.0]}
    return calibration.to_dict()


def test_a_written_calibration_reads_back_unchanged(tmp_path):
    path = tmp_path / "cal.json"
    document = _calibration_doc()
    path.write_text(json.dumps(document))
    calibration = read_calibration_file(path)
    assert calibration.to_dict() == {**document, "applied": None}
    assert calibration.hu_to_bmd([128.0]).item() == pytest.approx((128.0 + 3.0) / 1.25, rel=1e-6)


def _mutate(document: dict, path: tuple, value) -> dict:
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


@pytest.mark.parametrize(("path", "value", "message"), [
    (("slope_hu_per_mg_cm3",), "1.2", "'slope_hu_per_mg_cm3' must be a finite number"),
    (("intercept_hu",), KeyError, "'intercept_hu' must be a finite number"),
    (("r2",), 1.5, "'r2' must be a finite number within 0-1"),
    (("material",), "bone", "material 'bone' is not one of"),
    (("material",), ["K2HPO4"], "'material' must be str"),
    (("method",), "guess", "method 'guess' is not one of"),
    (("rods",), {"A": 1}, "'rods' must be list"),
    (("rods", 0), "rod", "rod 1 is not an object"),
    (("rods", 0, "residual_mg_cm3"), None, "rod 1: 'residual_mg_cm3' must be a finite number"),
    (("per_slice", "k"), [0], "per_slice lists are empty or of different lengths"),
    (("per_slice", "k"), [10, 0], "per_slice slice indices do not increase"),
    (("per_slice", "intercept_hu"), [0, "x"], "'per_slice.intercept_hu' must be a finite number"),
    (("warnings",), "text", "'warnings' must be list"),
    (("extra_field",), 1, "fields a calibration does not have (extra_field)"),
])
def test_malformed_calibration_files_are_refused_by_field(tmp_path, path, value, message):
    file = tmp_path / "cal.json"
    file.write_text(json.dumps(_mutate(_calibration_doc(), path, value)))
    with pytest.raises(BoneQCTError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_calibration_file(file)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is not valid JSON"),
    (b"\x00\x01\x02garbage", "is not valid JSON"),
    (b"\xc3\x28", "not UTF-8"),
    (b'{"a": ' * 3000 + b"1" + b"}" * 3000, "nested"),
    (b'{"slope_hu_per_mg_cm3": Infinity}', "Infinity is not a JSON number"),
    (b"null", "holds a JSON NoneType, not an object"),
])
def test_garbage_calibration_files_are_refused(tmp_path, content, message):
    file = tmp_path / "cal.json"
    file.write_bytes(content)
    with pytest.raises(BoneQCTError, match=message):
        read_calibration_file(file)


def test_calibration_path_that_is_a_folder_or_missing(tmp_path):
    with pytest.raises(BoneQCTError, match="not a regular file"):
        read_calibration_file(tmp_path)
    with pytest.raises(BoneQCTError, match="does not exist"):
        read_calibration_file(tmp_path / "none.json")


def _reference_doc() -> dict:
    return {"name": "r", "site": "lumbar-spine-trabecular", "measure": "bmd_mg_cm3",
            "material": "K2HPO4", "device": "QCT", "regions": "qct", "population": "p",
            "source": "s", "young_adult": {"F": {"mean": 170.0, "sd": 25.0}},
            "age_bands": [{"sex": "F", "age_min": 20, "age_max": 29, "mean": 170.0, "sd": 25.0}]}


@pytest.mark.parametrize(("path", "value", "message"), [
    (("young_adult", "F", "sd"), 0.0, "'young_adult.F.sd' must be a finite number within"),
    (("young_adult", "F", "mean"), "170", "'young_adult.F.mean' must be a finite number"),
    (("young_adult", "F"), 170.0, "'young_adult.F' must be an object"),
    (("age_bands", 0, "sex"), "X", "every age band needs sex F or M"),
    (("age_bands", 0, "age_max"), 10, "'age_bands.age_max' must be a finite number within 20-130"),
    (("age_bands",), {"F": 1}, "'age_bands' must be list"),
    (("name",), KeyError, "missing 'name'"),
])
def test_malformed_reference_files_are_refused_by_field(tmp_path, path, value, message):
    file = tmp_path / "reference.json"
    file.write_text(json.dumps(_reference_doc()))
    assert load_reference(file).young_adult["F"]["sd"] == 25.0
    file.write_text(json.dumps(_mutate(_reference_doc(), path, value)))
    with pytest.raises(BoneQCTError, match=message):
        load_reference(file)


def _spine_doc(series_uid: str, l1_bmd, qc_passed: bool = True) -> dict:
    return {"calibrated": True, "material": "K2HPO4", "mean_bmd_mg_cm3": None,
            "exam": {"series_uid": series_uid, "patient_id": "P", "study_date": "2024-01-0" +
                     series_uid},
            "levels": [{"level": "L1", "bmd_mg_cm3": l1_bmd, "qc": {"passed": qc_passed}},
                       {"level": "L2", "bmd_mg_cm3": 90.0, "qc": {"passed": True}}]}


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(levels={"L1": 80}), "'levels' must be list"),
    (lambda d: d["levels"].append("L3"), r"levels\[2\] is not a level"),
    (lambda d: d["levels"].append({"level": "L9"}), r"levels\[2\] is not a level"),
    (lambda d: d["levels"][0].update(bmd_mg_cm3="80"), r"'levels\[0\].bmd_mg_cm3' must be a finite"),
    (lambda d: d.update(calibrated="yes"), "'calibrated' must be bool"),
    (lambda d: d.update(exam=[]), "'exam' must be dict"),
])
def test_malformed_spine_documents_are_refused_by_compare(mutate, message):
    old = _spine_doc("1", 80.0)
    mutate(old)
    with pytest.raises(BoneQCTError, match=message):
        compare_exams(old, _spine_doc("2", 70.0))


def test_compare_leaves_out_levels_whose_roi_failed_qc():
    comparison = compare_exams(_spine_doc("1", 80.0), _spine_doc("2", 20.0, qc_passed=False))
    assert [row["level"] for row in comparison["levels"]] == ["L2"]
    assert any("L1: ROI quality check failed" in w for w in comparison["warnings"])


def test_reference_and_phantom_files_that_are_not_text(tmp_path):
    from boneqct.calibration.definitions import load_phantom_definition

    file = tmp_path / "reference.json"
    file.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(BoneQCTError, match="'reference.json' is not UTF-8 text; give a reference"):
        load_reference(file)
    with pytest.raises(BoneQCTError, match="'reference.json' is not UTF-8 text; give a phantoms"):
        load_phantom_definition(file)


def _mindways_rods(**changes) -> dict:
    from boneqct.data_files import read_named_json_text

    certificate = json.loads(read_named_json_text("phantoms", "mindways-model3"))
    for index, fields in changes.get("rods", {}).items():
        certificate["rods"][index].update(fields)
    certificate.update(changes.get("top", {}))
    return certificate


@pytest.mark.parametrize(("changes", "message"), [
    ({"rods": {1: {"name": "A"}}}, "names rod A more than once"),
    ({"rods": {i: {"density_mg_cm3": 100.0} for i in range(5)}},
     "at least two of them different"),
    ({"rods": {2: {"density_mg_cm3": float("inf")}}}, "needs finite rod densities"),
    ({"top": {"nominal_rod_diameter_mm": 0}}, r"rod diameter of 0 mm \(expected 3-60 mm\)"),
    ({"top": {"nominal_rod_diameter_mm": 2000}}, "rod diameter of 2000 mm"),
    ({"top": {"rods": []}}, "fewer than 2 rods"),
])
def test_phantom_certificates_no_line_can_come_from(tmp_path, changes, message):
    """A certificate naming rod B 'A' calibrated on rod A's HU twice with exit 0 and read
    the phantom's 50 mg/cm3 L1 as 42 (cement suggested); equal densities and a rod
    diameter of 0 or 2000 mm ended in tracebacks (adversarial review)."""
    from boneqct.calibration.definitions import load_phantom_definition

    file = tmp_path / "certificate.json"
    file.write_text(json.dumps(_mindways_rods(**changes)).replace("Infinity", "1e999"))
    with pytest.raises(BoneQCTError, match=message):
        load_phantom_definition(file)


def test_a_phantom_calibration_whose_line_is_not_its_rods_is_refused(tmp_path):
    """A calibration.json whose slope was edited (1.25 -> 2.5) while its rods still give
    1.25 was applied, halving every BMD (adversarial review); as written it reads back."""
    from boneqct.calibration import fit_calibration, load_phantom_definition
    from boneqct.io import write_json_atomic

    definition = load_phantom_definition("mindways-model3")
    # the phantom's scanner: HU = water + 1.4668 K2HPO4 - 1009.75 (boneqct phantom's truth)
    hu = [rod.water_mg_cm3 + 1.4668 * rod.density_mg_cm3 - 1009.75 for rod in definition.rods]
    document = fit_calibration(definition, hu).to_dict()
    path = write_json_atomic(tmp_path / "calibration.json", document)
    assert read_calibration_file(path).slope_hu_per_mg_cm3 == pytest.approx(1.2494, abs=1e-3)
    for field, value in (("slope_hu_per_mg_cm3", 2.5), ("intercept_hu", 5.0)):
        write_json_atomic(path, {**document, field: value})
        with pytest.raises(BoneQCTError, match="but its rods give 1.2494"):
            read_calibration_file(path)
