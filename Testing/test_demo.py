"""`make demo` end to end: the demo writes its reports and recovers the phantom's truth."""

from __future__ import annotations

import json
from pathlib import Path

import pypdf

from boneqct.demo import run_demo


def test_demo_runs_end_to_end(tmp_path):
    summary = run_demo(tmp_path)
    assert abs(summary["slope_error_percent"]) < 1.0
    assert abs(summary["intercept_error_hu"]) < 2.0
    for level, error_percent in summary["level_bmd_error_percent"].items():
        assert abs(error_percent) < 2.0, level
    assert summary["category"] == "osteoporosis"
    assert summary["fe_l2"]["converged"] and summary["fe_l2"]["strength_n"] > 0
    for path in summary["outputs"].values():
        assert Path(path).exists(), path
    text = pypdf.PdfReader(summary["outputs"]["report"]).pages[0].extract_text()
    assert "Cement augmentation suggested" in text
    assert json.loads((tmp_path / "demo.json").read_text())["category"] == "osteoporosis"
