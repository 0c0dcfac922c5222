"""The QA report read back: the verdict first (PASS, CHECK, FAIL) and each insert's checks
with their thresholds, on logs whose verdict follows from their values by the rules."""

from __future__ import annotations

import pytest

from boneqct.qa import append_to_log, control_chart, read_log, write_qa_report
from boneqct.qa.report import insert_checks

pypdf = pytest.importorskip("pypdf")

N_SESSIONS = 10


def _log(path, values_by_insert: dict[str, list[float]]):
    """A QA log with the given values per insert (mg HA/cm3), one session a day."""
    metadata = {"manufacturer": "Digital", "model": "Scanner", "kvp": 120.0}
    for s in range(N_SESSIONS):
        rows = [{"insert": name, "nominal_mg_cm3": 100.0, "unit": "mg HA/cm3",
                 "value": values[s]} for name, values in values_by_insert.items()]
        append_to_log(path, f"2025-01-{1 + s:02d}", metadata, "esp", rows, "phantom")
    return control_chart(read_log(path), baseline_sessions=5, tolerance_percent=3.0)


def _alternating(half_range: float) -> list[float]:
    """100 +/- half_range alternately: no trend, sigma = 2 half_range / 1.128."""
    return [100.0 + half_range * (-1) ** s for s in range(N_SESSIONS)]


def _report_text(tmp_path, charts) -> str:
    paths = write_qa_report(tmp_path, charts, "SCANNER.csv")
    reader = pypdf.PdfReader(paths["pdf"])
    assert len(reader.pages) == 1
    return "".join(page.extract_text() for page in reader.pages)


def test_stable_log_passes_every_check(tmp_path):
    # sigma 0.89: control limits about +/- 2.9 around 100.1, tolerance +/- 3.0; no slope
    charts = _log(tmp_path / "log.csv", {"L2": _alternating(0.5)})
    assert [row[-1] for row in insert_checks(charts[0])] == ["PASS", "PASS", "PASS"]
    text = _report_text(tmp_path, charts)
    assert text.index("QA PASS") < text.index("Insert")
    assert "mg HA/cm\u00b3" in text and "cm3" not in text
    assert "tolerance band (\u00b1 3 %)" in text


def test_a_step_fails_and_names_the_insert(tmp_path):
    step = _alternating(0.5)
    step[-1] = 110.0  # 10 mg/cm3 above a centre with sigma about 3: beyond the limits
    charts = _log(tmp_path / "log.csv", {"L1": _alternating(0.5), "L3": step})
    text = _report_text(tmp_path, charts)
    headline = text[:text.index("Insert")]
    assert "QA FAIL: L3" in headline and "L1" not in headline.replace("QA FAIL: L3", "")
    l3 = {row[0]: row for row in insert_checks(charts[1])}
    assert l3["control limits (Shewhart 1-3s)"][2:] == ["1 of 10 sessions beyond", "FAIL"]
    # the threshold printed is the chart's limits, in the log's unit
    low, high = charts[1].lower_limit, charts[1].upper_limit
    assert f"{low:.1f} to {high:.1f} mg HA/cm\u00b3" in text


def test_out_of_tolerance_only_asks_for_a_check(tmp_path):
    # +/- 4 around 100: beyond the 3 % band every session, inside limits of +/- 23 (sigma 7.1)
    charts = _log(tmp_path / "log.csv", {"L2": _alternating(4.0)})
    verdicts = [row[-1] for row in insert_checks(charts[0])]
    assert verdicts == ["PASS", "PASS", "CHECK"]
    text = _report_text(tmp_path, charts)
    assert text.index("QA CHECK: L2 outside the tolerance band") < text.index("Insert")
    assert "10 of 10 sessions outside" in text
