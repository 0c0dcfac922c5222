"""QA with the ESP-like digital phantom: inserts vs nominal, the per-scanner log, drift rules."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from boneqct.calibration import calibrate_with_phantom
from boneqct.io import write_volume
from boneqct.phantoms import make_spine_phantom
from boneqct.qa import append_to_log, control_chart, load_nominal, measure_esp, read_log
from boneqct.qa.esp import QAError
from boneqct.qa.log import LOG_COLUMNS

NOMINAL_MG_CM3 = {"L1": 50.0, "L2": 100.0, "L3": 200.0}


@pytest.fixture(scope="module")
def phantom():
    return make_spine_phantom(seed=11)


def test_inserts_and_rods_vs_nominal(phantom):
    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    rows = measure_esp(phantom.volume, load_nominal("digital-esp"), calibration)
    inserts = {r["insert"]: r for r in rows}
    for name, nominal in NOMINAL_MG_CM3.items():
        assert inserts[name]["nominal_mg_cm3"] == nominal
        assert abs(inserts[name]["value"] - nominal) < max(2.0, 0.02 * nominal), inserts[name]
        truth = next(v for v in phantom.truth["vertebrae"] if v["level"] == name)
        assert np.allclose(inserts[name]["center_ras_mm"], truth["body_center_ras_mm"], atol=1.5)
    assert sorted(k for k in inserts if k.startswith("rod_")) == [f"rod_{c}" for c in "ABCDE"]
    with pytest.raises(QAError, match="HA"):
        measure_esp(phantom.volume, load_nominal("esp"), calibration)   # K2HPO4 vs HA


def test_cli_qa_appends_sessions_and_report(phantom, tmp_path):
    ct = write_volume(phantom.volume, tmp_path / "qa_ct.nii.gz")
    log = tmp_path / "logs" / "scanner.csv"
    for session in ("2025-01-01", "2025-01-08"):
        run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa", str(ct), "--phantom-type",
                              "digital-esp", "--phantom", "mindways-model3", "--log", str(log),
                              "--session", session], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    rows = read_log(log)
    assert [r["session"] for r in rows if r["insert"] == "L2"] == ["2025-01-01", "2025-01-08"]
    with log.open() as handle:
        assert tuple(next(csv.reader(handle))) == LOG_COLUMNS
    # the same session again, or another phantom into this log: refused, the log unchanged
    for phantom_type, calibration, session, message in (
            ("digital-esp", ("--phantom", "mindways-model3"), "2025-01-08",
             "holds session '2025-01-08' already"),
            ("esp", ("--hu",), "2025-01-15",
             "holds sessions of the digital-esp phantom; this one is esp")):
        run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa", str(ct), "--phantom-type",
                              phantom_type, *calibration, "--log", str(log), "--session", session],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr, run.stderr
    assert read_log(log) == rows
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa-report", str(log), "--out",
                          str(tmp_path / "report")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # two sessions: no limits to check against yet, which "no drift" alone did not say
    assert "not judged yet: 2 session(s), none after the 5 that set the control limits" in run.stdout
    assert (tmp_path / "report" / "qa_chart.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "qa_report.pdf").read_bytes().startswith(b"%PDF")


def test_a_log_of_its_header_alone_takes_a_session(tmp_path):
    """A log holding only its header (no session yet) takes the first session (the check
    for a session logged twice read it and refused: reviewer)."""
    log = tmp_path / "log.csv"
    log.write_text(",".join(LOG_COLUMNS) + "\n")
    rows = [{"insert": "L1", "nominal_mg_cm3": 50.0, "unit": "HU", "value": 51.0}]
    append_to_log(log, "2025-01-01", {"manufacturer": "A", "model": "B"}, "esp", rows, "none")
    assert [r["session"] for r in read_log(log)] == ["2025-01-01"]


def test_no_phantom_in_the_scan_is_a_clean_error(phantom, tmp_path):
    empty = phantom.volume.with_array(np.full(phantom.volume.array_kji.shape, -1000, np.int16))
    ct = write_volume(empty, tmp_path / "air.nii.gz")
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa", str(ct), "--log",
                          str(tmp_path / "log.csv")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Found 0 enclosed" in run.stderr
    assert not (tmp_path / "log.csv").exists()


def _simulated_log(path, drift_percent_total: float, seed: int, n_sessions: int = 20):
    """A QA log of ``n_sessions`` sessions with noise of 1 mg/cm3 (the ESP's published session
    SD is 1.1-1.7 mg HA/cm3, J Clin Densitom 2002;5:259) and a linear drift reaching
    ``drift_percent_total`` at the last session."""
    rng = np.random.default_rng(seed)
    metadata = {"manufacturer": "Digital", "model": "Scanner", "kvp": 120.0}
    for s in range(n_sessions):
        factor = 1.0 + drift_percent_total / 100.0 * s / (n_sessions - 1)
        rows = [{"insert": name, "nominal_mg_cm3": nominal, "unit": "mg HA/cm3",
                 "value": nominal * factor + rng.normal(0.0, 1.0)}
                for name, nominal in NOMINAL_MG_CM3.items()]
        append_to_log(path, f"2025-{1 + s // 28:02d}-{1 + s % 28:02d}", metadata, "esp", rows,
                      "phantom")
    return read_log(path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_percent_drift_over_20_sessions_is_flagged(tmp_path, seed):
    charts = {c.insert: c for c in control_chart(_simulated_log(tmp_path / "log.csv", 3.0, seed))}
    assert charts["L3"].drift    # 6 mg/cm3 of drift on 1 mg/cm3 noise
    assert charts["L3"].trend_change_percent == pytest.approx(3.0, abs=0.6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stable_log_is_not_flagged(tmp_path, seed):
    charts = control_chart(_simulated_log(tmp_path / "log.csv", 0.0, seed))
    # the trend rule's false-alarm rate is at most 1% per insert (1.7% per simulated 3-insert
    # log); Shewhart 1-3s fires on 0.27% of sessions (about 15% of such logs hold one point)
    assert not any(c.drift for c in charts)
    assert sum(len(c.shewhart_sessions) for c in charts) <= 1
    assert all(len(c.values) == 20 for c in charts)


def test_cli_qa_report_exit_status_flags_drift(tmp_path):
    _simulated_log(tmp_path / "log.csv", 3.0, 4)
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa-report",
                          str(tmp_path / "log.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "DRIFT" in run.stdout


def test_session_label_rule():
    """The given label, else the study date, else the current time (said by the source)."""
    from datetime import datetime

    from boneqct.qa import session_label

    now = datetime(2025, 3, 4, 5, 6, 7)
    assert session_label({"study_date": "2025-01-02"}, "mine", now) == ("mine", "given")
    assert session_label({"study_date": "2025-01-02"}, "", now) == ("2025-01-02", "study date")
    assert session_label({"study_date": "20250102"}, "", now) == ("2025-01-02", "study date")
    assert session_label({"study_date": None}, "", now) == ("2025-03-04T05:06:07",
                                                            "current time")


def test_analyze_qa_result_round_trips_and_says_an_undated_session(phantom, tmp_path):
    import json
    from datetime import datetime

    from boneqct.qa import QAOptions, QAResult, analyze_qa

    calibration = calibrate_with_phantom(phantom.volume, "mindways-model3")
    volume = phantom.volume.with_array(phantom.volume.array_kji)
    volume.metadata = {**phantom.volume.metadata, "study_date": None}
    options = QAOptions(phantom_type="digital-esp", tolerance_percent=2.0)
    result = analyze_qa(volume, calibration, options, log_path=tmp_path / "qa.csv",
                        now=datetime(2025, 3, 4, 5, 6, 7))
    assert result.session == "2025-03-04T05:06:07" and result.session_source == "current time"
    assert "no study date" in result.warnings[0]
    assert result.rows == measure_esp(phantom.volume, load_nominal("digital-esp"), calibration)
    assert [c.insert for c in result.charts][:3] == ["L1", "L2", "L3"]
    assert result.charts[0].tolerance_high == pytest.approx(1.02 * result.charts[0].center)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["options"]["tolerance_percent"] == 2.0
    restored = QAResult.from_dict(document)
    assert restored.to_dict() == result.to_dict() and restored.flagged == result.flagged


def test_cli_qa_labels_the_session_with_the_study_date(phantom, tmp_path):
    ct = write_volume(phantom.volume, tmp_path / "qa_ct.nii.gz")
    run = subprocess.run([sys.executable, "-m", "boneqct.cli", "qa", str(ct), "--phantom-type",
                          "digital-esp", "--hu", "--log", str(tmp_path / "log.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # a NIfTI file has no study date: the current time, said on stderr
    assert "(current time)" in run.stdout and "no study date" in run.stderr
