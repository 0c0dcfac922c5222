"""The command line: JSON output of `boneqct info`, and clean errors (no traceback, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from boneqct.io import write_volume
from boneqct.volume import Volume


def _run(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_info_json_reports_size_spacing_and_matrix(tmp_path):
    m = np.diag([0.8, 0.9, 2.0, 1.0])
    m[:3, 3] = [10.0, -5.0, 30.0]
    write_volume(Volume(np.zeros((4, 3, 2), np.int16), m), tmp_path / "ct.nii.gz")
    result = _run("info", tmp_path / "ct.nii.gz", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["size"] == [2, 3, 4]
    np.testing.assert_allclose(info["spacing_mm"], [0.8, 0.9, 2.0])
    np.testing.assert_allclose(info["ijk_to_ras"], m, atol=1e-5)
    assert info["warnings"] == []


def test_bad_input_gives_message_and_exit_code_without_traceback(tmp_path):
    result = _run("info", tmp_path)
    assert result.returncode == 2
    assert "error: No DICOM image files" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_phantom_is_a_clean_error(tmp_path):
    write_volume(Volume(np.zeros((4, 3, 2), np.int16), np.eye(4)), tmp_path / "ct.nii.gz")
    result = _run("calibrate", tmp_path / "ct.nii.gz", "--phantom", "no-such-phantom")
    assert result.returncode == 2
    assert "Unknown calibration phantom 'no-such-phantom'" in result.stderr
    assert "Traceback" not in result.stderr
