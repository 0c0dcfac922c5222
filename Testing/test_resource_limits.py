"""Resource limits known before allocating (issue 11 item 2): the estimates against the real
allocations on small cases, and refusals (exit 2, estimate, limit and what to do) before the
allocation, under --max-memory-gb."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pydicom
import pytest

from boneqct.calibration import convert_volume_to_bmd, manual_calibration
from boneqct.errors import InputError
from boneqct.io import load_ct, write_volume
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms import make_spine_phantom
from boneqct.resources import (
    BYTES_PER_GB,
    DEFAULT_MAX_MEMORY_GB,
    HIP_BYTES_PER_PIXEL,
    ResourceError,
    dicom_buffer_gb,
    fe_model_estimate,
    limited_memory,
    memory_limit_gb,
    projection_memory_gb,
    repositioning_estimate,
)
from boneqct.volume import Volume


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _peak_bytes(function):
    """(result, peak bytes traced while ``function()`` ran)."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------
# DICOM pixel buffer


def _series(folder, slope: str | None = None, rows: int | None = None,
            columns: int | None = None, n_slices: int = 6):
    array = np.random.default_rng(2).normal(40.0, 10.0, (n_slices, 20, 24)).astype(np.int16)
    write_dicom_series(Volume(array, np.diag([0.8, 0.8, 2.0, 1.0])), folder)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if slope is not None:
            ds.RescaleSlope = slope
        ds.Rows = ds.Rows if rows is None else rows
        ds.Columns = ds.Columns if columns is None else columns
        ds.save_as(path)
    return folder


def test_dicom_buffer_estimate_is_the_float_volume_read(tmp_path):
    loaded = load_ct(_series(tmp_path / "s", slope="0.5"))  # slope 0.5: float32 HU
    assert loaded.array_kji.dtype == np.float32
    assert dicom_buffer_gb(20, 24, 6) * BYTES_PER_GB == 20 * 24 * 6 * 4 == loaded.array_kji.nbytes
    integer = load_ct(_series(tmp_path / "t"))  # slope 1: int16, half the estimate
    assert integer.array_kji.nbytes == dicom_buffer_gb(20, 24, 6) * BYTES_PER_GB / 2


@pytest.mark.parametrize(("rows", "columns"), [(0, 24), (20, 0), (65535, 65535)])
def test_impossible_image_size_is_refused_from_the_headers(tmp_path, rows, columns):
    folder = _series(tmp_path / "s", rows=rows, columns=columns)
    with pytest.raises(InputError, match=f"image size of {rows} x {columns} pixels"):
        load_ct(folder)


def test_pixel_buffer_over_the_limit_is_refused_before_any_pixel_is_read(tmp_path):
    folder = _series(tmp_path / "s", rows=8000, columns=8000)  # headers claim 8000 x 8000
    expected_gb = 8000 * 8000 * 6 * 4 / 1e9  # 1.536 GB
    with pytest.raises(ResourceError) as refused:
        load_ct(folder, max_memory_gb=1.0)
    message = str(refused.value)
    assert f"{expected_gb:.3g} GB" in message and "limit of 1 GB" in message
    assert "--max-memory-gb" in message and "6 slices of 8000 x 8000" in message
    # under the default limit the headers pass and the short pixel data is found damaged
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_ct(folder)
    # the limit in force (as a command's --max-memory-gb sets it) reaches the loader
    with limited_memory(1.0), pytest.raises(ResourceError):
        load_ct(folder)
    assert memory_limit_gb() == DEFAULT_MAX_MEMORY_GB


def test_refusal_allocates_nothing_large(tmp_path):
    folder = _series(tmp_path / "s", rows=8000, columns=8000)
    tracemalloc.start()
    try:
        with pytest.raises(ResourceError):
            load_ct(folder, max_memory_gb=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # headers only, not the 1.5 GB buffer


# ---------------------------------------------------------------------------------------------
# finite-element model


@pytest.fixture(scope="module")
def spine():
    from boneqct.spine.body import delineate_body_from_seed

    phantom = make_spine_phantom()
    level = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"], "K2HPO4")
    body = delineate_body_from_seed(phantom.volume, level["body_center_ras_mm"], "L2")
    return phantom, body, convert_volume_to_bmd(phantom.volume, calibration)


def _fe_estimate(phantom, body, element_mm):
    return fe_model_estimate(body.body_mask_kji, phantom.volume.ijk_to_ras, body.axis_ras,
                             body.anterior_ras, element_mm, 3.0)


@pytest.mark.parametrize("element_mm", [2.0, 1.0, 0.75])
def test_fe_element_and_cell_estimates_match_the_mesh(spine, element_mm):
    from boneqct.fe.mesh import mesh_vertebral_body

    phantom, body, bmd = spine
    estimate = _fe_estimate(phantom, body, element_mm)
    mesh = mesh_vertebral_body(bmd, body.body_mask_kji, body.axis_ras, body.anterior_ras,
                               element_mm=element_mm, pmma_mm=3.0)
    assert 0.5 < estimate.n_elements / mesh.n_elements < 2.0
    assert 0.5 < estimate.n_cells / mesh.material_kji.size < 2.0


def test_fe_memory_estimate_bounds_the_measured_peak(spine):
    from boneqct.fe.vertebra import analyze_vertebra

    phantom, body, bmd = spine
    estimate = _fe_estimate(phantom, body, 1.0)
    _, peak = _peak_bytes(lambda: analyze_vertebra(bmd, body, element_mm=1.0,
                                                   criterion="linear"))
    assert 0.5 < peak / (estimate.memory_gb * BYTES_PER_GB) <= 1.0


@pytest.fixture(scope="module")
def spine_file(tmp_path_factory):
    phantom = make_spine_phantom()
    path = write_volume(phantom.volume, tmp_path_factory.mktemp("limits") / "ct.nii.gz")
    level = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    seed = "L2=" + ",".join(f"{x:.2f}" for x in level["body_center_ras_mm"])
    return phantom, path, seed


def test_fe_over_the_limit_is_refused_before_meshing(spine_file, tmp_path):
    phantom, path, seed = spine_file
    line = phantom.truth["calibration"]
    done = _run("fe", path, "--level", "L2", f"--seed={seed}", "--out", tmp_path / "out",
                "--slope", line["slope_hu_per_mg_cm3"], "--intercept", line["intercept_hu"],
                "--material", "K2HPO4", "--element-mm", "0.5", "--max-memory-gb", "0.1")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "finite-element model" in done.stderr and "limit of 0.1 GB" in done.stderr
    assert "use a coarser --element-mm, or raise --max-memory-gb" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("command", ["fe", "hip", "qa", "repositioning"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "lots"])
def test_max_memory_gb_must_be_a_finite_number_in_range(command, value, capsys):
    from boneqct.cli import main

    with pytest.raises(SystemExit) as stopped:
        main([command, "ct.nii.gz", "--max-memory-gb", value])
    assert stopped.value.code == 2
    assert "argument --max-memory-gb" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# hip projection


@pytest.fixture(scope="module")
def femur():
    from boneqct.hip.pipeline import extract_femur
    from boneqct.phantoms.femur import make_femur_phantom

    phantom = make_femur_phantom()
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"], "K2HPO4")
    return phantom, extract_femur(phantom.volume, calibration, "left")


def test_projection_estimate_matches_the_measured_growth_of_the_grid(femur):
    from boneqct.hip.projection import FINE_PER_PIXEL, project_femur

    assert HIP_BYTES_PER_PIXEL == 3 * FINE_PER_PIXEL**2 * 8  # the grids the estimate counts
    _, (mask, frame, bmd) = femur
    coarse, coarse_peak = _peak_bytes(lambda: project_femur(bmd, mask, frame, 200.0, 1.0))
    fine, fine_peak = _peak_bytes(lambda: project_femur(bmd, mask, frame, 200.0, 0.2))
    estimated_growth = (projection_memory_gb(*fine.bmc_g.shape)
                        - projection_memory_gb(*coarse.bmc_g.shape)) * BYTES_PER_GB
    assert 0.5 < (fine_peak - coarse_peak) / estimated_growth < 2.0


def test_projection_over_the_limit_is_refused(femur, tmp_path):
    phantom, _ = femur
    path = write_volume(phantom.volume, tmp_path / "hip.nii.gz")
    line = phantom.truth["calibration"]
    done = _run("hip", path, "--side", "left", "--out", tmp_path / "out", "--slope",
                line["slope_hu_per_mg_cm3"], "--intercept", line["intercept_hu"],
                "--pixel-mm", "0.2", "--max-memory-gb", "0.1")
    assert done.returncode == 2, done.stderr
    assert "hip projection" in done.stderr and "pixels of 0.2 mm" in done.stderr
    assert "use a coarser --pixel-mm, or raise --max-memory-gb" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# repositioning study


def test_repositioning_memory_estimate_bounds_the_measured_peak(spine):
    from boneqct.precision import repositioning_study

    phantom, body, _ = spine
    line = phantom.truth["calibration"]
    calibration = manual_calibration(line["slope_hu_per_mg_cm3"], line["intercept_hu"], "K2HPO4")
    seeds = {"L2": body.center_ras_mm}
    estimate = repositioning_estimate(phantom.volume.array_kji.size, 2, len(seeds))
    _, peak = _peak_bytes(lambda: repositioning_study(phantom.volume, calibration, seeds,
                                                      n_runs=2))
    assert 0.5 < peak / (estimate.memory_gb * BYTES_PER_GB) <= 1.0


def test_repositioning_over_the_limit_is_refused(spine_file):
    _, path, seed = spine_file
    done = _run("repositioning", path, f"--seed={seed}", "--hu", "--max-memory-gb", "0.01")
    assert done.returncode == 2, done.stderr
    assert "repositioning study" in done.stderr and "limit of 0.01 GB" in done.stderr
    assert "Traceback" not in done.stderr
