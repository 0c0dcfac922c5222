"""Precision statistics against a hand-computed example; the repositioning study on the phantom."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from boneqct.precision import LSC_FACTOR_95, precision_from_table, repositioning_study
from boneqct.precision.statistics import PrecisionError, read_precision_table
from boneqct.spine.options import SpineOptions

# Three subjects at one site: two with 3 repeats, one with 2 (unequal repeats -> dof weights).
EXAMPLE = {"s1": [100.0, 102.0, 104.0], "s2": [80.0, 81.0, 79.0], "s3": [120.0, 123.0]}


def _rows():
    return [{"subject": s, "repeat": i + 1, "site": "L1-L2", "value": v}
            for s, values in EXAMPLE.items() for i, v in enumerate(values)]


def test_rms_sd_cv_lsc_match_hand_computation():
    # By hand: SD^2 = 4 (s1), 1 (s2), 4.5 (s3); dof 2, 2, 1 -> df 5;
    # RMS-SD^2 = (2*4 + 2*1 + 1*4.5) / 5 = 14.5 / 5 = 2.9; RMS-SD = 1.702939.
    # CV^2 = 4/102^2, 1/80^2, 4.5/121.5^2.
    rms_sd = math.sqrt(14.5 / 5)
    rms_cv = math.sqrt((2 * 4 / 102**2 + 2 * 1 / 80**2 + 4.5 / 121.5**2) / 5)
    # chi-square 5% quantile with 5 dof (statistical tables): 1.145476
    upper = rms_sd * math.sqrt(5 / 1.145476)
    (site,) = precision_from_table(_rows())
    assert site.degrees_of_freedom == 5 and site.n_subjects == 3 and site.n_measurements == 8
    assert f"{site.rms_sd:.4g}" == f"{rms_sd:.4g}" == "1.703"
    assert f"{site.rms_cv_percent:.4g}" == f"{100 * rms_cv:.4g}"
    assert f"{site.lsc_95:.4g}" == f"{2.77 * rms_sd:.4g}" == "4.717"
    assert f"{site.rms_sd_upper:.4g}" == f"{upper:.4g}"
    assert LSC_FACTOR_95 == 2.77


def test_equal_repeats_reduce_to_iscd_formula():
    rows = [{"subject": s, "repeat": r, "site": "x", "value": v}
            for s, vals in {"a": [1.0, 2.0], "b": [5.0, 5.5], "c": [3.0, 3.0]}.items()
            for r, v in enumerate(vals)]
    (site,) = precision_from_table(rows)
    sds = [np.std([1.0, 2.0], ddof=1), np.std([5.0, 5.5], ddof=1), 0.0]
    assert site.rms_sd == pytest.approx(math.sqrt(sum(s**2 for s in sds) / 3), rel=1e-12)


def test_cli_precision_and_bad_table(tmp_path):
    table = tmp_path / "precision.csv"
    table.write_text("subject,repeat,site,value\n" + "".join(
        f"{r['subject']},{r['repeat']},{r['site']},{r['value']}\n" for r in _rows()))
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "precision", str(table), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "LSC" in run.stdout
    document = json.loads((tmp_path / "out" / "precision.json").read_text())
    assert document["sites"][0]["rms_sd"] == pytest.approx(math.sqrt(2.9))
    assert read_precision_table(table)[0]["value"] == 100.0
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,site,value\na,x,1\n")
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "precision", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "repeat" in run.stderr and "Traceback" not in run.stderr
    with pytest.raises(PrecisionError):
        precision_from_table([{"subject": "a", "repeat": 1, "site": "x", "value": 1.0}])


def test_repositioning_precision_on_the_phantom():
    from boneqct.calibration import manual_calibration
    from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom

    phantom = make_spine_phantom(SpinePhantomParams(phantom_present=False),
                                 ScannerParams(n_slices=24), seed=3)
    truth = phantom.truth["calibration"]
    calibration = manual_calibration(truth["slope_hu_per_mg_cm3"], truth["intercept_hu"])
    seeds = {v["level"]: v["body_center_ras_mm"] for v in phantom.truth["vertebrae"]
             if v["level"] == "L2"}
    study = repositioning_study(phantom.volume, calibration, seeds, n_runs=6,
                                perturbation_mm=3.0, options=SpineOptions(levels_used=("L2",)))
    (level,) = study["levels"]
    values = [r["value"] for r in study["runs"]]
    assert len(values) == 6 and len({round(v, 6) for v in values}) > 1
    assert level["degrees_of_freedom"] == 5
    assert level["rms_sd"] == pytest.approx(np.std(values, ddof=1))
    # ROI placement alone: well under the ESP workstation figures (CV 0.41-0.98%)
    assert level["rms_cv_percent"] < 1.0
    assert abs(level["mean_value"] - 100.0) < 3.0
    print("repositioning L2:", level)
