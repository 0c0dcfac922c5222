"""The digital spine phantom by level: smaller thoracic bodies growing caudally (sizes from
``VERTEBRAL_BODY_MM``), more than ten vertebrae (T4-L5 and the sacrum), and a T4-L5 phantom
assessed as ``boneqct vfa`` assesses it: normal levels grade 0, a thoracic wedge graded from
its true heights, heights within 0.5 mm of the truth on 1 mm slices. A level whose endplate
lies at the scan's end is left ungraded and the warning says so and what to do."""

from __future__ import annotations

import numpy as np
import pytest

from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom
from boneqct.phantoms.anatomy import (
    LUMBAR_DISC_MM,
    MAX_VERTEBRAE,
    THORACIC_DISC_MM,
    VERTEBRAL_BODY_MM,
    Anatomy,
    anatomical_spine_params,
)
from boneqct.spine.body import endplate_at_scan_end
from boneqct.spine.fracture import genant_grade
from boneqct.spine.levels import VFA_LEVEL_NAMES
from boneqct.spine.vfa import analyze_vfa
from boneqct.volume import Volume

#: T4-L5 with a wedge (anterior height -32 %) at T7, tilted 5 degrees (the column is 390 mm
#: long: a 10 degree tilt would take it out of a small field of view).
PARAMS = anatomical_spine_params(VFA_LEVEL_NAMES, spine_tilt_deg=5.0, phantom_present=False,
                                 deformities=(("T7", "wedge"),))


def _scanner(slice_mm: float, n_slices: int) -> ScannerParams:
    return ScannerParams(pixel_mm=0.8, matrix=(100, 150), n_slices=n_slices,
                         slice_spacing_mm=slice_mm, slice_thickness_mm=slice_mm,
                         fov_center_ras_mm=(0.0, -45.0), noise_sd_hu=15.0, supersample=2)


def _seeds(phantom) -> dict:
    return {v["level"]: np.array(v["body_center_ras_mm"]) for v in phantom.truth["vertebrae"]}


def _true_heights(anatomy: Anatomy, level: str, fracture: dict) -> dict:
    """The true heights through the measured points: the outer height less one cortical
    thickness (heights run between the endplates' cortical mid-surfaces)."""
    vertebra = next(v for v in anatomy.vertebrae if v.level == level)
    return {name: anatomy.body_height_mm(level, (np.array(p["superior"]) + p["inferior"]) / 2.0)
            - vertebra.cortical_thickness_mm for name, p in fracture["points_ras_mm"].items()}


def test_body_sizes_grow_caudally_and_discs_separate_the_levels():
    anatomy = Anatomy(PARAMS)
    assert [v.level for v in anatomy.vertebrae] == list(VFA_LEVEL_NAMES)
    sizes = np.array([(v.width_mm, v.depth_mm, v.height_mm) for v in anatomy.vertebrae])
    np.testing.assert_array_equal(sizes, [VERTEBRAL_BODY_MM[lv] for lv in VFA_LEVEL_NAMES])
    assert np.all(np.diff(sizes[:, :2], axis=0) >= 0.0)  # widths and depths
    assert np.all(np.diff(sizes[: VFA_LEVEL_NAMES.index("L3") + 1, 2]) > 0.0)  # heights to L3
    thoracic = sizes[: VFA_LEVEL_NAMES.index("L1")]
    assert np.all(thoracic.max(axis=0) < sizes[VFA_LEVEL_NAMES.index("L1"):].min(axis=0))
    # neighbours one disc apart along the axis: thin thoracic discs, thicker lumbar ones
    for upper, lower in zip(anatomy.vertebrae, anatomy.vertebrae[1:], strict=False):
        disc_mm = upper.axial_offset_mm - lower.axial_offset_mm - (upper.height_mm + lower.height_mm) / 2
        expected = LUMBAR_DISC_MM if lower.level.startswith("L") else THORACIC_DISC_MM
        assert disc_mm == pytest.approx(expected), (upper.level, lower.level)
    # the column is centred: T4 and L5 equally far from the middle
    assert anatomy.vertebrae[0].axial_offset_mm == pytest.approx(-anatomy.vertebrae[-1].axial_offset_mm)


def test_each_body_is_painted_with_its_own_size():
    """The trabecular core as painted (labels on a 0.1 mm grid through each body's centre):
    an ellipse of the level's width and depth less the cortex across the axis, the level's
    height less the cortex along it."""
    anatomy = Anatomy(anatomical_spine_params(VFA_LEVEL_NAMES, sacrum=True))
    assert len(anatomy.vertebrae) == 15  # more than ten: T4-L5 and S1
    assert len({v.label for v in anatomy.vertebrae}) == 15
    assert all(anatomy.labels[v.label] == f"trabecular_{v.level}" for v in anatomy.vertebrae)
    step_mm = 0.1
    grid_mm = np.arange(-30.0, 30.0, step_mm)
    for vertebra in anatomy.vertebrae[:-1]:
        x, y, z = vertebra.center_ras_mm  # an untilted spine: its frame is RAS
        across = anatomy.spine_labels(x + grid_mm[None, :], y + grid_mm[:, None], z)
        t = vertebra.cortical_thickness_mm
        area_mm2 = np.count_nonzero(across == vertebra.label) * step_mm ** 2
        assert area_mm2 == pytest.approx(
            np.pi * (vertebra.width_mm / 2 - t) * (vertebra.depth_mm / 2 - t), rel=0.01), vertebra.level
        along = anatomy.spine_labels(x, y, z + grid_mm)
        height_mm = np.count_nonzero(along == vertebra.label) * step_mm
        assert height_mm == pytest.approx(vertebra.height_mm - 2 * t, abs=2 * step_mm), vertebra.level


def test_a_phantom_holds_at_most_max_vertebrae():
    levels = tuple(f"V{n}" for n in range(MAX_VERTEBRAE + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_VERTEBRAE} vertebrae"):
        SpinePhantomParams(levels=levels, trabecular_bmd_mg_cm3=(100.0,) * len(levels),
                           cortical_thickness_mm=1.0)
    with pytest.raises(ValueError, match="body_height_mm: one value, or 3"):
        SpinePhantomParams(body_height_mm=(25.0, 25.0))
    with pytest.raises(ValueError, match="no body size for"):
        anatomical_spine_params(("C7", "T1"))


@pytest.mark.slow
def test_t4_to_l5_phantom_is_graded_with_heights_within_half_a_millimetre():
    """1 mm slices over the whole column (420 slices of a small field of view)."""
    phantom = make_spine_phantom(PARAMS, _scanner(1.0, 420), seed=15)
    assert "unverified" in phantom.truth["notes"]["body_sizes"]
    result = analyze_vfa(phantom.volume, seeds=_seeds(phantom))
    anatomy = Anatomy(PARAMS)
    assert [lv["level"] for lv in result.levels] == list(VFA_LEVEL_NAMES)
    for level in result.levels:
        fracture = level["fracture"]
        assert fracture["quality"]["passed"], (level["level"], fracture["quality"]["reason"])
        truth = _true_heights(anatomy, level["level"], fracture)
        for name, measured_mm in fracture["heights_mm"].items():
            assert measured_mm == pytest.approx(truth[name], abs=0.5), (level["level"], name)
        if level["level"] == "T7":  # the wedge, graded as its true heights grade it
            expected = genant_grade(1.0 - truth["anterior"] / truth["posterior"])
            assert expected >= 1
            assert (fracture["genant_grade"], fracture["type"]) == (expected, "wedge")
        else:
            assert (fracture["genant_grade"], fracture["type"]) == (0, None), level["level"]


def test_endplate_at_scan_end_names_the_endplate_the_slice_and_what_to_do():
    volume = Volume(np.zeros((40, 4, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))  # S 0-78 mm
    def points(superior_s_mm, inferior_s_mm):
        return {name: {"superior": [1.0, 1.0, superior_s_mm], "inferior": [1.0, 1.0, inferior_s_mm]}
                for name in ("anterior", "middle", "posterior")}
    assert endplate_at_scan_end(volume, points(60.0, 30.0), 3.0) is None
    top = endplate_at_scan_end(volume, points(76.5, 50.0), 3.0)
    assert top.startswith("its superior endplate lies at the end of the scan, 1.5 mm from its last slice")
    assert "a scan reaching at least 10 mm further cranially covers it" in top
    bottom = endplate_at_scan_end(volume, points(30.0, 2.0), 3.0)
    assert "inferior endplate" in bottom and "2.0 mm from its first slice" in bottom
    assert "further caudally" in bottom


def test_a_level_not_graded_at_the_scan_end_says_why_and_what_to_do():
    """The default phantom (L1-L3) on 1.6 mm slices: L1's superior endplate 2 mm inside the
    scan's last slice is too close to it for the endplate fit, and L1 is not graded, saying so;
    a scan 16 mm longer does not say so (its L1 can still be left ungraded for another reason:
    endplates parallel to these slices hold little subvoxel information)."""
    def assess(n_slices):
        scanner = ScannerParams(pixel_mm=1.0, matrix=(140, 120), fov_center_ras_mm=(0.0, -40.0),
                                n_slices=n_slices, slice_spacing_mm=1.6, slice_thickness_mm=1.6,
                                noise_sd_hu=10.0, supersample=2)
        phantom = make_spine_phantom(SpinePhantomParams(), scanner, seed=3)
        return analyze_vfa(phantom.volume, seeds=_seeds(phantom))

    short = assess(56)
    l1 = short.levels[0]["fracture"]
    assert l1["genant_grade"] is None
    warning = next(w for w in short.warnings if w.startswith("L1"))
    for words in ("L1: heights not reliable (its superior endplate lies at the end of the scan",
                  "from its last slice", "a scan reaching at least 10 mm further cranially "
                  "covers it", "not graded"):
        assert words in warning, warning
    longer = assess(66)  # no endplate at the scan's end; graded levels are the truth's 0
    assert not any("end of the scan" in w for w in longer.warnings), longer.warnings
    grades = [lv["fracture"]["genant_grade"] for lv in longer.levels]
    assert set(grades) <= {0, None}
    # L2 and L3 lie parallel to the slices: not graded (L2 was, 0 on a posterior height
    # 1.3 mm over its truth)
    assert all("lie parallel to the 1.6 mm slices" in lv["fracture"]["quality"]["reason"]
               for lv in longer.levels[1:])
