"""Spine QCT end to end on the digital phantom: results, files, report, command line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pypdf
import pytest

from boneqct.calibration import manual_calibration
from boneqct.errors import SpineError
from boneqct.io import read_volume_file, write_volume
from boneqct.options import options_to_dict
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom
from boneqct.phantoms.anatomy import POSTERIOR_ELEMENTS
from boneqct.spine.measure import MAX_ROI_SD_HU
from boneqct.spine.options import SpineOptions
from boneqct.spine.outputs import write_spine_outputs
from boneqct.spine.pipeline import SpineResult, analyze_spine
from boneqct.spine.seeds import read_markups_seeds

sys.path.insert(0, str(Path(__file__).parent))
from phantom_labels import vertebra_labels  # noqa: E402

# L1 at 36 mg/cm3: the seed's cement case; L2 and L3 well above the threshold.
DENSITIES_MG_CM3 = (36.0, 100.0, 200.0)
SCANNER = ScannerParams(pixel_mm=0.9, matrix=(360, 270), n_slices=56, slice_spacing_mm=1.6,
                        slice_thickness_mm=1.6, noise_sd_hu=15.0)


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom(SpinePhantomParams(trabecular_bmd_mg_cm3=DENSITIES_MG_CM3), SCANNER,
                              seed=4)


@pytest.fixture(scope="module")
def true_calibration(phantom):
    truth = phantom.truth["calibration"]
    return manual_calibration(truth["slope_hu_per_mg_cm3"], truth["intercept_hu"], "K2HPO4")


def _seeds(phantom):
    return {v["level"]: np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}


@pytest.fixture(scope="module")
def result(phantom, true_calibration):
    return analyze_spine(phantom.volume, true_calibration, seeds=_seeds(phantom))


def test_per_level_bmd_matches_truth(result, phantom):
    truth = {v["level"]: v["trabecular_bmd_mg_cm3"] for v in phantom.truth["vertebrae"]}
    assert [lv.level for lv in result.levels] == ["L1", "L2", "L3"]
    for lv in result.levels:
        assert lv.bmd_mg_cm3 == pytest.approx(truth[lv.level], rel=0.02, abs=1.5), lv.level
        assert lv.qc["passed"], lv.qc
        assert lv.n_voxels > 500
        # a 9 mm slab: volume = pi a b h within voxelisation error
        a, b = lv.roi_semi_axes_mm
        assert lv.roi_volume_mm3 == pytest.approx(np.pi * a * b * 9.0, rel=0.15)


def test_diagnosis_cement_and_levels_used(result):
    l1, l2, _ = result.levels
    assert result.levels_used == ["L1", "L2"]
    assert result.mean_bmd_mg_cm3 == pytest.approx((l1.bmd_mg_cm3 + l2.bmd_mg_cm3) / 2)
    assert result.category == "osteoporosis"  # mean about 68 mg/cm3
    assert [lv.cement_augmentation for lv in result.levels] == [True, False, False]
    assert "t_score" not in result.to_dict()
    assert "no reference data" in result.reference["why_absent"][0]


def test_excluded_level_leaves_the_mean(phantom, true_calibration):
    result = analyze_spine(phantom.volume, true_calibration,
                           SpineOptions(levels_used=("L1", "L2", "L3"), exclude=("L1",)),
                           seeds=_seeds(phantom))
    assert result.levels_used == ["L2", "L3"]
    assert result.category == "normal"


@pytest.mark.parametrize(("seeds", "message"), [
    (lambda s: {"L1": s["L3"], "L3": s["L1"]}, "L1 lies below L3"),
    (lambda s: {"L1": s["L1"], "L2": s["L1"] + [0.0, 0.0, 3.0]}, "L1 lies only 0 mm above L2"),
])
def test_levels_out_of_anatomical_order_are_refused(phantom, true_calibration, seeds, message):
    """Swapped seed labels or two levels in one vertebra: no number at all (issue 11)."""
    with pytest.raises(SpineError, match=message + ".*out of anatomical order"):
        analyze_spine(phantom.volume, true_calibration, seeds=seeds(_seeds(phantom)))


@pytest.mark.parametrize("painted", ["L3", "L3 body"])
def test_one_label_on_two_vertebrae_measures_neither_as_that_level(phantom, true_calibration,
                                                                   painted):
    """L3 labelled as L2 too (whole, or its body only: joined to L2 or not through the
    posterior elements): L2 is not measured, saying why, where it measured L3's 200 mg/cm3
    as L2 with no warning; L1 still is (adversarial review)."""
    labels = vertebra_labels(phantom, "totalsegmentator")
    array = labels.array_kji.copy()
    l3 = array == 29
    if painted == "L3 body":
        l3 &= phantom.labels.array_kji != POSTERIOR_ELEMENTS
    array[l3] = 30
    result = analyze_spine(phantom.volume, true_calibration,
                           SpineOptions(levels_used=("L1", "L2")),
                           labels=labels.with_array(array))
    by_level = {lv.level: lv for lv in result.levels}
    assert not by_level["L2"].measured
    assert "covers two separate vertebral bodies" in by_level["L2"].reason
    assert by_level["L1"].bmd_mg_cm3 == pytest.approx(DENSITIES_MG_CM3[0], abs=5.0)
    assert result.category is None


def test_noise_beyond_what_the_mean_can_bear_fails_qc(true_calibration):
    """200 HU of noise: the ROI means stay near truth, but every ROI fails its noise check, so
    no level is used for a diagnosis and none gets a cement flag."""
    noisy = make_spine_phantom(SpinePhantomParams(trabecular_bmd_mg_cm3=DENSITIES_MG_CM3),
                               replace(SCANNER, noise_sd_hu=200.0), seed=4)
    result = analyze_spine(noisy.volume, true_calibration, seeds=_seeds(noisy))
    for lv in result.levels:
        assert lv.sd_hu > MAX_ROI_SD_HU and not lv.qc["acceptable_noise"], lv.level
        assert not lv.qc["passed"] and lv.cement_augmentation is None
    assert result.category is None
    assert any("noise beyond what the mean can bear" in w for w in result.warnings)


def test_uncalibrated_mode_measures_hu_only(phantom):
    result = analyze_spine(phantom.volume, None, seeds=_seeds(phantom))
    truth = phantom.truth["calibration"]
    l2 = result.levels[1]
    assert l2.bmd_mg_cm3 is None and l2.cement_augmentation is None
    assert result.category is None and result.mean_bmd_mg_cm3 is None
    expected_hu = truth["slope_hu_per_mg_cm3"] * 100.0 + truth["intercept_hu"]
    assert l2.mean_hu == pytest.approx(expected_hu, abs=3.0)
    assert "Uncalibrated" in result.warnings[0]


def test_output_files(result, phantom, tmp_path):
    paths = write_spine_outputs(tmp_path, result, phantom.volume)
    document = json.loads(paths["json"].read_text())
    for key in ("calibration", "levels", "levels_used", "mean_bmd_mg_cm3", "category"):
        assert key in document
    level = document["levels"][0]
    for key in ("level", "bmd_mg_cm3", "sd_mg_cm3", "n_voxels", "roi_volume_mm3",
                "roi_center_ras_mm", "cement_augmentation", "qc"):
        assert key in level
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("level,measured,bmd_mg_cm3") and len(rows) == 4
    labels = read_volume_file(paths["rois"])
    np.testing.assert_allclose(labels.ijk_to_ras, phantom.volume.ijk_to_ras, atol=1e-5)
    for n, roi in enumerate(result.rois):
        np.testing.assert_array_equal(labels.array_kji == n + 1, roi.mask_kji)
    centres = read_markups_seeds(paths["markups"])
    np.testing.assert_allclose(centres["L2"], result.levels[1].roi_center_ras_mm, atol=1e-3)
    text = "".join(page.extract_text() for page in pypdf.PdfReader(paths["report"]).pages)
    assert len(pypdf.PdfReader(paths["report"]).pages) == 1
    for fragment in ("Levels", "L1", "L2", "L3", "Cement augmentation", "osteoporosis",
                     "PHANTOM", "120 kV / 200 mAs", "mg/cm\u00b3"):
        assert fragment in text, fragment
    # the headline comes first: the diagnostic mean and its category, before any table
    mean = f"{result.mean_bmd_mg_cm3:.1f} mg/cm\u00b3 K2HPO4"
    assert text.index(mean) < text.index("Levels")
    assert f"{result.category.upper()} (ACR)" in text


def test_result_read_back_from_its_document_writes_the_same_outputs(result, phantom, tmp_path):
    """spine.json -> SpineResult.from_dict -> the same document; with the ROI label map written
    beside it, the read-back result writes the same report (issue 12: results that persist)."""
    first = write_spine_outputs(tmp_path / "live", result, phantom.volume)
    document = json.loads(first["json"].read_text())
    document.pop("exam")
    again = SpineResult.from_dict(json.loads(json.dumps(document)))
    assert json.loads(json.dumps(again.to_dict())) == document
    assert again.options == {**options_to_dict(SpineOptions()), "levels_used": ["L1", "L2"]}
    second = write_spine_outputs(tmp_path / "reloaded", again, phantom.volume,
                                 roi_labels=read_volume_file(first["rois"]))

    def report_text(path):
        lines = "".join(page.extract_text() for page in pypdf.PdfReader(path).pages).splitlines()
        return [line for line in lines if "generated" not in line]

    assert report_text(second["report"]) == report_text(first["report"])
    assert second["csv"].read_text() == first["csv"].read_text()
    np.testing.assert_array_equal(read_volume_file(second["rois"]).array_kji,
                                  read_volume_file(first["rois"]).array_kji)


def test_cli_spine_and_compare(phantom, tmp_path):
    paths = write_phantom(phantom, tmp_path / "phantom", formats=("nifti",))
    seeds = [f"--seed={level}={','.join(f'{v:.2f}' for v in p)}"
             for level, p in _seeds(phantom).items()]
    runs = {}
    for name, extra in (("a", []), ("b", ["--anonymize"])):
        out = tmp_path / name
        result = subprocess.run([sys.executable, "-m", "boneqct.cli", "spine", str(paths["nifti"]),
                                 "--phantom", "mindways-model3", "--out", str(out), *seeds, *extra],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "CEMENT AUGMENTATION SUGGESTED" in result.stdout
        runs[name] = out
    compare = subprocess.run([sys.executable, "-m", "boneqct.cli", "compare",
                              str(runs["a"] / "spine.json"), str(runs["b"] / "spine.json"),
                              "--precision", "1.0", "--json"], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stderr
    comparison = json.loads(compare.stdout)
    assert all(abs(row["change_mg_cm3"]) < 1e-9 for row in comparison["levels"])
    assert comparison["lsc_mg_cm3"] == pytest.approx(2.77)


def test_anonymized_outputs_carry_no_identity(phantom, true_calibration, tmp_path):
    volume = replace(phantom.volume, metadata={**phantom.volume.metadata,
                                               "patient_name": "DOE^JANE", "patient_id": "X123"})
    result = analyze_spine(volume, true_calibration, seeds=_seeds(phantom))
    paths = write_spine_outputs(tmp_path, result, volume, anonymize=True)
    text = "".join(page.extract_text() for page in pypdf.PdfReader(paths["report"]).pages)
    for content in (paths["json"].read_text(), text):
        assert "DOE" not in content and "X123" not in content
    assert "anonymised" in text


def test_cli_seed_outside_bone_is_a_clean_error(phantom, tmp_path):
    path = write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    result = subprocess.run([sys.executable, "-m", "boneqct.cli", "spine", str(path),
                             "--out", str(tmp_path / "o"), "--seed", "L1=0,60,0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "L1" in result.stderr


def test_cli_spine_from_a_real_label_map_uncalibrated(real_data_dir, tmp_path):
    """tptbox L3 (VerSe labels, no phantom): L2 and L4 are cut by the scan and reported as not
    measured; L3's ROI mean HU is close to the mean of its body interior (subregion 50)."""
    folder = real_data_dir / "tptbox_L3"
    result = subprocess.run([sys.executable, "-m", "boneqct.cli", "spine",
                             str(folder / "sub-ct_label-22_ct.nii.gz"), "--out", str(tmp_path),
                             "--labels", str(folder / "sub-ct_seg-vert_label-22_msk.nii.gz"),
                             "--label-scheme", "verse", "--levels", "L3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "measuring HU only" in result.stderr and "L2 not measured" in result.stderr
    document = json.loads((tmp_path / "spine.json").read_text())
    assert not document["calibrated"] and document["category"] is None
    measured = {lv["level"]: lv for lv in document["levels"]}
    assert [name for name, lv in measured.items() if lv["measured"]] == ["L3"]
    assert "cut by the end of the scan" in measured["L2"]["reason"]
    level = measured["L3"]
    ct = read_volume_file(folder / "sub-ct_label-22_ct.nii.gz").array_kji
    vertebrae = read_volume_file(folder / "sub-ct_seg-vert_label-22_msk.nii.gz").array_kji
    interior = read_volume_file(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz").array_kji == 50
    interior_mean_hu = ct[interior & (vertebrae == 22)].mean()
    assert level["level"] == "L3" and level["bmd_mg_cm3"] is None
    assert level["mean_hu"] == pytest.approx(interior_mean_hu, abs=5.0)


def test_cli_spine_from_a_markups_file(phantom, tmp_path):
    from boneqct.spine.seeds import write_markups_points

    ct = write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    seeds = write_markups_points(_seeds(phantom), tmp_path / "seeds.mrk.json", name="seeds")
    result = subprocess.run([sys.executable, "-m", "boneqct.cli", "spine", str(ct), "--out",
                             str(tmp_path / "out"), "--seeds", str(seeds), "--slope",
                             str(phantom.truth["calibration"]["slope_hu_per_mg_cm3"]),
                             "--intercept", str(phantom.truth["calibration"]["intercept_hu"])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    levels = json.loads((tmp_path / "out" / "spine.json").read_text())["levels"]
    for level, truth in zip(levels, DENSITIES_MG_CM3, strict=True):
        assert level["bmd_mg_cm3"] == pytest.approx(truth, rel=0.02, abs=1.5)


def test_internal_calibration_values_are_an_opportunistic_estimate(phantom, true_calibration,
                                                                   tmp_path):
    """The same line labelled as a phantomless (internal) calibration: BMD given, no category,
    no cement flag, and spine.json and the report say why."""
    internal = replace(true_calibration, method="internal")
    result = analyze_spine(phantom.volume, internal, seeds=_seeds(phantom))
    assert result.mean_bmd_mg_cm3 == pytest.approx(68.0, abs=3.0)
    assert result.category is None
    assert all(lv.cement_augmentation is None for lv in result.levels)
    document = json.loads(write_spine_outputs(tmp_path, result, phantom.volume)["json"]
                          .read_text())
    assert document["interpretation"]["basis"] == "opportunistic estimate"
    assert document["cement_note"] is None
    assert any(w.startswith("No category: the internal") for w in document["warnings"])
    text = "".join(p.extract_text() for p in pypdf.PdfReader(tmp_path / "spine_report.pdf").pages)
    assert "opportunistic estimate" in text and "Cement augmentation" not in text


def test_spine_with_a_hip_reference_is_refused(phantom, true_calibration):
    from boneqct.reference import ReferenceMismatchError, load_reference

    with pytest.raises(ReferenceMismatchError, match="total-hip areal BMD"):
        analyze_spine(phantom.volume, true_calibration, seeds=_seeds(phantom),
                      reference=load_reference("nhanes3-total-hip"), sex="F", age_years=60)


@pytest.fixture(scope="module")
def phantom_nifti(phantom, tmp_path_factory):
    return write_volume(phantom.volume, tmp_path_factory.mktemp("nifti") / "ct.nii.gz")


def _cli_spine(ct, out, *extra):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", "spine", str(ct), "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("reference", ["nhanes3-total-hip", "nhanes3-femoral-neck", "nhanes3",
                                       "chinese-women"])
def test_cli_spine_with_hip_reference_exit_2(phantom, phantom_nifti, tmp_path, reference):
    run = _cli_spine(phantom_nifti, tmp_path / "o", "--seed", "L1=0,0,0", "--slope", "1.3",
                     "--intercept", "0", "--material", "K2HPO4", "--reference", reference)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "hip" in run.stderr and not (tmp_path / "o" / "spine.json").exists()


def test_cli_hu_mode_and_the_slope_1_idiom(phantom, phantom_nifti, tmp_path):
    """--hu: HU only, no BMD, category or cement flag, and no 'no calibration' warning;
    --slope 1 --intercept 0 without --material: a manual line, no category, told to use --hu."""
    seeds = [f"--seed={level}={','.join(f'{v:.2f}' for v in p)}"
             for level, p in _seeds(phantom).items()]
    hu = _cli_spine(phantom_nifti, tmp_path / "hu", "--hu", *seeds)
    assert hu.returncode == 0, hu.stderr
    assert "no calibration given" not in hu.stderr
    document = json.loads((tmp_path / "hu" / "spine.json").read_text())
    assert not document["calibrated"] and document["category"] is None
    assert all(lv["bmd_mg_cm3"] is None and lv["cement_augmentation"] is None
               for lv in document["levels"])
    # the headline gives the mean HU of the levels used, and says why there is no BMD
    text = "".join(p.extract_text() for p in pypdf.PdfReader(tmp_path / "hu" / "spine_report.pdf").pages)
    assert f"{document['mean_hu']:.1f} HU" in text and "no BMD, no category" in text
    identity = _cli_spine(phantom_nifti, tmp_path / "one", "--slope", "1", "--intercept", "0",
                          *seeds)
    assert identity.returncode == 0, identity.stderr
    document = json.loads((tmp_path / "one" / "spine.json").read_text())
    assert document["calibration"]["method"] == "manual"
    assert document["material"] == "unstated" and document["category"] is None
    assert all(lv["cement_augmentation"] is None for lv in document["levels"])
    assert any("identity" in w and "--hu" in w for w in document["warnings"])
    assert any("--material" in w for w in document["warnings"])
