"""Calibration report page: the verdict first, the rods found on the slice shown as Slicer
shows an axial slice (patient's right on the left, anterior on top, the letters as text), the
same picture whichever way the scan's voxels are stored."""

from __future__ import annotations

import numpy as np
import pytest
from report_text import text_and_letter_positions

from boneqct.calibration import calibrate_with_phantom
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.report import pdf
from boneqct.report.calibration_section import calibration_section, rod_image_figure
from boneqct.volume import Volume

SCANNER = ScannerParams(pixel_mm=1.0, matrix=(300, 230), n_slices=24, slice_spacing_mm=2.0,
                        slice_thickness_mm=2.0, noise_sd_hu=5.0)


@pytest.fixture(scope="module")
def scan():
    phantom = make_spine_phantom(scanner=SCANNER, seed=2)
    return phantom.volume, calibrate_with_phantom(phantom.volume, "mindways-model3")


def _shown(figure):
    """The displayed image and the rods' marker positions (mm in the view)."""
    ax = figure.axes[0]
    markers = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
               if line.get_marker() == "o"]
    return np.asarray(ax.images[0].get_array()), np.array(markers)


def test_rod_view_is_the_same_whichever_way_the_voxels_are_stored(scan):
    """The phantom as stored (LPS rows and columns) and the same scan with its columns and
    rows reversed (the RAS storage of a NIfTI writer): the same view, the same circled rods,
    and each circle on its rod's bright insert."""
    volume, calibration = scan
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [volume.array_kji.shape[2] - 1, volume.array_kji.shape[1] - 1]
    reversed_storage = Volume(volume.array_kji[:, ::-1, ::-1].copy(), volume.ijk_to_ras @ flip,
                              volume.metadata)
    image, markers = _shown(rod_image_figure(calibration, volume))
    image_reversed, markers_reversed = _shown(rod_image_figure(calibration, reversed_storage))
    np.testing.assert_array_equal(image, image_reversed)
    np.testing.assert_allclose(markers, markers_reversed)
    assert len(markers) == len(calibration.rods)
    for (x_mm, y_mm), rod in zip(markers, calibration.rods, strict=True):
        assert image[int(y_mm), int(x_mm)] == pytest.approx(rod["measured_hu"], abs=60.0)
    # the patient's right (RAS +x) on the view's left: the rightmost rod in RAS is leftmost
    x_ras = [rod["center_ras_mm"][0] for rod in calibration.rods]
    assert np.argmin(markers[:, 0]) == np.argmax(x_ras)


def test_calibration_page_reads_verdict_then_view_with_its_letters(scan, tmp_path):
    volume, calibration = scan
    path = pdf.write_report(tmp_path / "calibration_report.pdf", "Calibration report",
                            calibration_section(calibration, volume))
    text, letters, n_pages = text_and_letter_positions(path)
    assert text.index("PASS") < text.index("Rod")
    (a_x, a_y), (r_x, r_y), (l_x, l_y), (p_x, p_y) = (letters[c][0] for c in "ARLP")
    assert r_x < a_x < l_x and abs(r_y - l_y) < 1.0  # right on the left, level
    assert p_y < r_y < a_y and abs(a_x - p_x) < 1.0  # anterior on top (page y grows upwards)
