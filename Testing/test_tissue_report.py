"""The tissue report read back: the headline (fat areas, L3 muscle area) first, units typeset,
the axial view with its orientation letters where Slicer shows them; and the radiological
display of an axial slice against markers at known patient positions."""

from __future__ import annotations

import numpy as np
import pytest
from report_text import text_and_letter_positions

from boneqct.calibration import calibrate_with_phantom
from boneqct.phantoms import make_spine_phantom
from boneqct.phantoms.scanner import ScannerParams
from boneqct.report.pdf import radiological_axial
from boneqct.tissue import TissueOptions, analyze_tissue, write_tissue_outputs
from boneqct.volume import Volume

pypdf = pytest.importorskip("pypdf")

#: In-plane axes of an axial volume: the i, j directions in RAS as DICOM (LPS) stores them, as
#: a RAS-stored volume, and with i and j swapped (i along the body's front-back axis).
IN_PLANE_DIRECTIONS = {"lps": ((-1, 0, 0), (0, -1, 0)), "ras": ((1, 0, 0), (0, 1, 0)),
                       "swapped": ((0, -1, 0), (-1, 0, 0)), "swapped-ras": ((0, 1, 0), (1, 0, 0))}


def _marked_volume(direction_name: str, spacing_ij_mm=(0.8, 1.6)) -> Volume:
    """A 1-slice volume of 60 x 40 pixels with 1000 at the patient's right-anterior point
    RAS (20, 10, 0) mm and 500 at the left-posterior point (-20, -10, 0)."""
    i_dir, j_dir = (np.array(d, float) for d in IN_PLANE_DIRECTIONS[direction_name])
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = i_dir * spacing_ij_mm[0], j_dir * spacing_ij_mm[1]
    shape_ji = (40, 60)
    # the grid centred on RAS (0, 0, 0)
    affine[:3, 3] = -(affine[:3, 0] * (shape_ji[1] - 1) + affine[:3, 1] * (shape_ji[0] - 1)) / 2
    volume = Volume(np.zeros((1, *shape_ji), np.float32), affine, {})
    for ras, value in (((20.0, 10.0, 0.0), 1000.0), ((-20.0, -10.0, 0.0), 500.0)):
        i, j, _ = np.rint(volume.ras_to_ijk_points(ras)[0]).astype(int)
        volume.array_kji[0, j, i] = value
    return volume


@pytest.mark.parametrize("direction_name", list(IN_PLANE_DIRECTIONS))
def test_radiological_axial_shows_the_patients_right_on_the_left_and_anterior_up(direction_name):
    volume = _marked_volume(direction_name)
    display, (row_mm, col_mm) = radiological_axial(volume)
    image = display(volume.array_kji[0])
    (right_row, right_col), (left_row, left_col) = (
        np.argwhere(image == value)[0] for value in (1000.0, 500.0))
    # patient's right (RAS +x) on the image's left, anterior (RAS +y) at the top
    assert right_col < image.shape[1] / 2 < left_col
    assert right_row < image.shape[0] / 2 < left_row
    # 40 mm apart across the image and 20 mm down it, in the displayed pixel sizes
    assert abs((left_col - right_col) * col_mm - 40.0) <= col_mm
    assert abs((left_row - right_row) * row_mm - 20.0) <= row_mm


def test_radiological_axial_refuses_slices_that_are_not_axial():
    sagittal = np.eye(4)[:, [1, 2, 0, 3]]
    with pytest.raises(ValueError, match="not axial"):
        radiological_axial(Volume(np.zeros((2, 3, 4)), sagittal, {}))


@pytest.fixture(scope="module")
def analysed():
    """The digital phantom on 14 slices 5 mm apart (L3 on slice 1), four slices analysed."""
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=14, slice_spacing_mm=5.0), seed=1)
    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    l3 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L3")["body_center_ras_mm"]
    return phantom.volume, analyze_tissue(phantom.volume, calibration,
                                          TissueOptions(slices=(0, 3)), l3_point_ras_mm=l3)



def test_report_headline_units_and_orientation_letters(analysed, tmp_path):
    volume, result = analysed
    paths = write_tissue_outputs(tmp_path, result, {"patient_name": "PHANTOM^DIGITAL"},
                                 volume_hu=volume)
    text, letters, n_pages = text_and_letter_positions(paths["report"])
    assert n_pages == 1
    fat = result.fat_compartments
    headline = (f"L3 muscle {result.skeletal_muscle_l3['area_cm2']:.1f} cm\u00b2 \u00b7 "
                f"visceral fat {fat['visceral_fat']['area_cm2']:.1f} cm\u00b2 \u00b7 "
                f"subcutaneous fat {fat['subcutaneous_fat']['area_cm2']:.1f} cm\u00b2")
    assert headline in text.replace("\n", " ").replace("\u00a0", " ")
    # first: before the view's legend and every table
    assert text.index("L3 muscle") < text.index("Calibration") < text.index("Region")
    assert "mg/cm\u00b3" in text and "g/cm\u00b3" in text and "cm2" not in text
    assert "W 400 / L 40" in text and "patient's right (R) on the left" in text
    # the letters as Slicer places them: R left of L, A above P (page y grows upwards)
    (r_x, r_y), (l_x, l_y) = letters["R"][0], letters["L"][0]
    (a_x, a_y), (p_x, p_y) = letters["A"][0], letters["P"][0]
    assert r_x < a_x < l_x and abs(r_y - l_y) < 1.0
    assert p_y < r_y < a_y and abs(a_x - p_x) < 1.0


def test_report_of_a_stored_result_has_the_headline_without_a_view(analysed, tmp_path):
    from boneqct.tissue import TissueResult

    _, result = analysed
    stored = TissueResult.from_dict(result.to_dict())
    text, letters, _ = text_and_letter_positions(write_tissue_outputs(tmp_path, stored)["report"])
    assert f"L3 muscle {result.skeletal_muscle_l3['area_cm2']:.1f}" in text
    assert "Axial slice" not in text and "R" not in letters
