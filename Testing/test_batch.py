"""Cohort batch on Dask (issue 18): a manifest of phantom cases with a corrupt CT and a case
that hangs (5 ok, 1 failed, 1 timed out, summary complete), resume, results equal to the
single-case command's, a separately started cluster passed by address, bad manifests, and
--scan choosing a series by its rules."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pypdf
import pytest

from boneqct.batch import read_manifest, read_run_log, run
from boneqct.batch.child import THREAD_VARIABLES
from boneqct.batch.run import TEST_HANG_ENV, _to_run
from boneqct.cli import main
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms import ScannerParams, SpinePhantomParams, make_spine_phantom, write_phantom
from boneqct.volume import Volume

SCANNER = ScannerParams(pixel_mm=1.0, matrix=(300, 230), n_slices=56, slice_spacing_mm=1.6,
                        slice_thickness_mm=1.6, noise_sd_hu=10.0)
#: One phantom; the levels averaged set the ACR category: L1/L2 75 mg/cm3 (osteoporosis),
#: L1/L3 115 (low bone mass), L2/L3 130 (normal).
DENSITIES_MG_CM3 = {"L1": 60.0, "L2": 90.0, "L3": 170.0}
CATEGORIES = {"L1,L2": "osteoporosis", "L1,L3": "low bone mass", "L2,L3": "normal"}
#: The batch's time limit of a case: far above a phantom case on a loaded 2-core machine (6 s
#: alone, up to about 40 s with other work running).
TIMEOUT_S = 600.0
#: The hanging case's own limit (its manifest row's timeout_s).
HANG_TIMEOUT_S = 10.0
OK_CASES = {  # case id: (levels, sex, age)
    "c1": ("L1,L2", "F", 62), "c2": ("L2,L3", "M", 48), "c3": ("L1,L3", "M", 75),
    "c4": ("L2,L3", "F", 55), "c5": ("L1,L2", "F", 81),
}


def _seed_cell(truth: dict) -> str:
    return ";".join(f"{v['level']}={','.join(f'{x:g}' for x in v['body_center_ras_mm'])}"
                    for v in truth["vertebrae"])


@pytest.fixture
def tmp_path():
    """A temporary folder of this test's own: pytest's numbered tmp_path folders are removed
    by other pytest sessions on this machine (it keeps the last three), which can happen
    during these minutes-long tests."""
    with tempfile.TemporaryDirectory(prefix="boneqct-batch-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def cohort():
    """A phantom CT and the 7-row manifest (5 measurable, a corrupt CT, a hanging case)."""
    with tempfile.TemporaryDirectory(prefix="boneqct-batch-cohort-") as folder:
        yield _write_cohort(Path(folder))


def _write_cohort(root: Path) -> dict:
    # tilted: endplates parallel to the slices would leave the fracture assessment nothing
    # to grade (each level's endplates must cross the slices)
    phantom = make_spine_phantom(SpinePhantomParams(
        trabecular_bmd_mg_cm3=tuple(DENSITIES_MG_CM3.values()), spine_tilt_deg=8.0), SCANNER,
        seed=3)
    write_phantom(phantom, root / "spine", formats=("nifti",))
    (root / "corrupt.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 damaged")
    seeds = _seed_cell(phantom.truth)
    rows = [[case, "spine/phantom_ct.nii.gz", levels, sex, age, ""]
            for case, (levels, sex, age) in OK_CASES.items()]
    rows += [["broken", "corrupt.nii.gz", "L1,L2", "F", 70, ""],
             ["stuck", "spine/phantom_ct.nii.gz", "L1,L2", "M", 66, f"{HANG_TIMEOUT_S:g}"]]
    manifest = root / "cohort.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "analysis", "ct", "phantom", "levels", "seed", "sex", "age",
                         "timeout_s"])
        for case, ct, levels, sex, age, timeout in rows:
            writer.writerow([case, "spine", ct, "mindways-model3", levels, seeds, sex, age,
                             timeout])
    return {"root": root, "manifest": manifest, "seeds": seeds}


@pytest.fixture(scope="module")
def batch(cohort):
    """The cohort run once on a local cluster of 2 worker processes, 'stuck' hanging."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv(TEST_HANG_ENV, "stuck")
    try:
        result = run(cohort["manifest"], cohort["root"] / "out", workers=2, timeout_s=TIMEOUT_S,
                     progress=False)
    finally:
        monkeypatch.undo()
    return result


def test_failures_and_hangs_do_not_stop_the_batch(batch, cohort):
    status = {row["case_id"]: row["status"] for row in batch.rows}
    assert status == {**dict.fromkeys(OK_CASES, "ok"), "broken": "failed", "stuck": "timeout"}
    rows = {row["case_id"]: row for row in batch.rows}
    assert "corrupt.nii.gz" in rows["broken"]["message"]
    assert f"time limit of {HANG_TIMEOUT_S:g} s" in rows["stuck"]["message"]
    assert rows["stuck"]["elapsed_s"] == pytest.approx(HANG_TIMEOUT_S, abs=5)
    out = cohort["root"] / "out"
    assert not (out / "broken").exists() and not (out / "stuck").exists()
    assert "truncated or its compression is damaged" in (out / "logs" / "broken.log").read_text()


def test_results_match_the_phantoms_truth(batch, cohort):
    for row in batch.rows:
        if row["status"] != "ok":
            continue
        levels, sex, age = OK_CASES[row["case_id"]]
        truth = np.mean([DENSITIES_MG_CM3[level] for level in levels.split(",")])
        assert row["spine_mean_bmd_mg_cm3"] == pytest.approx(truth, rel=0.03)
        assert row["spine_category"] == CATEGORIES[levels]
        assert (row["sex"], row["age_years"], row["spine_levels_used"]) == \
            (sex, age, levels.replace(",", "/"))


def test_run_log_and_summary_files_are_complete(batch, cohort):
    out = cohort["root"] / "out"
    log = [json.loads(line) for line in (out / "run_log.jsonl").read_text().splitlines()]
    assert sorted(r["case_id"] for r in log) == sorted([*OK_CASES, "broken", "stuck"])
    cases = {c.case_id: c for c in read_manifest(cohort["manifest"])}
    for record in log:
        assert {"start_utc", "end_utc", "worker", "status", "message", "tool_version",
                "options_hash", "cpu_s", "threads", "server_start_s"} <= set(record)
        assert record["options_hash"] == cases[record["case_id"]].options_hash
    with open(out / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["case_id"] for r in table] == [*OK_CASES, "broken", "stuck"]
    parquet = pq.read_table(out / "summary.parquet").to_pylist()
    for csv_row, parquet_row, row in zip(table, parquet, batch.rows, strict=True):
        assert csv_row["status"] == parquet_row["status"] == row["status"]
        if row["status"] == "ok":  # full precision in both files
            assert float(csv_row["spine_mean_bmd_mg_cm3"]) == row["spine_mean_bmd_mg_cm3"] \
                == parquet_row["spine_mean_bmd_mg_cm3"]
    text = "".join(p.extract_text() for p in pypdf.PdfReader(out / "cohort_report.pdf").pages)
    assert "cohort" in text.lower() and "timeout" in text and "broken" in text
    assert (out / "cohort_report.png").stat().st_size > 10_000


def test_a_case_equals_the_single_case_command(batch, cohort, tmp_path):
    """Bit for bit, although the batch gives its cases another number of threads than the
    single command run here has (parallel sums could change the last digits)."""
    root = cohort["root"]
    assert read_run_log(root / "out")["c2"]["threads"] == batch.threads_per_case
    threads = {name: str(batch.threads_per_case + 1) for name in THREAD_VARIABLES}
    single = subprocess.run(
        [sys.executable, "-m", "boneqct.cli", "spine", str(root / "spine" / "phantom_ct.nii.gz"),
         "--out", str(tmp_path / "single"), "--phantom", "mindways-model3", "--levels", "L2,L3",
         *[f"--seed={s}" for s in cohort["seeds"].split(";")],
         "--sex", "M", "--age", "48"], capture_output=True, text=True, timeout=300,
        env={**os.environ, **threads})
    assert single.returncode == 0, single.stderr
    by_batch = json.loads((root / "out" / "c2" / "spine.json").read_text())
    alone = json.loads((tmp_path / "single" / "spine.json").read_text())
    assert by_batch == alone  # every number, bit for bit (JSON floats round-trip exactly)


def test_resume_reruns_only_what_changed(batch, cohort):
    out = cohort["root"] / "out"
    finished = {c: (out / c / "spine.json").stat().st_mtime_ns for c in OK_CASES}
    changed = cohort["root"] / "changed.csv"
    row = "c5,spine,spine/phantom_ct.nii.gz,mindways-model3,"
    text = cohort["manifest"].read_text().replace(f'{row}"L1,L2"', f'{row}"L1,L3"')
    changed.write_text(text)
    assert text != cohort["manifest"].read_text()
    again = run(changed, out, workers=1, resume=True, timeout_s=TIMEOUT_S, progress=False)
    assert again.ran == ["c5"]  # new settings; ok cases and failed ones (no retry) skipped
    assert {c: (out / c / "spine.json").stat().st_mtime_ns for c in OK_CASES if c != "c5"} == \
        {c: t for c, t in finished.items() if c != "c5"}
    assert read_run_log(out)["c5"]["status"] == "ok"
    c5 = next(r for r in again.rows if r["case_id"] == "c5")
    assert (c5["spine_levels_used"], c5["spine_category"]) == ("L1/L3", "low bone mass")
    with pytest.raises(Exception, match="--resume"):
        run(cohort["manifest"], out, progress=False)


def test_retry_failed_selects_failed_and_timed_out_cases(batch, cohort):
    cases = read_manifest(cohort["manifest"])
    status = {**dict.fromkeys(OK_CASES, "ok"), "broken": "failed", "stuck": "timeout"}
    previous = {c.case_id: {"status": status[c.case_id], "options_hash": c.options_hash}
                for c in cases}
    previous["c1"]["options_hash"] = "another"  # c1's settings changed since
    out = cohort["root"] / "out"
    assert [c.case_id for c in _to_run(cases, previous, out, retry_failed=True)] == \
        ["c1", "broken", "stuck"]
    assert [c.case_id for c in _to_run(cases, previous, out, retry_failed=False)] == ["c1"]


def test_scheduler_started_separately_is_used_by_address(cohort, batch, tmp_path):
    """Case c2 again (equal to the cohort run's, ``batch``) and a fracture assessment of the
    (undeformed) phantom vertebrae, on a cluster started beforehand."""
    from distributed import LocalCluster

    manifest = cohort["root"] / "two.csv"  # beside the CT: relative paths
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "analysis", "ct", "phantom", "levels", "seed", "sex", "age"])
        writer.writerow(["c2", "spine", "spine/phantom_ct.nii.gz", "mindways-model3", "L2,L3",
                         cohort["seeds"], "M", 48])
        writer.writerow(["v1", "vfa", "spine/phantom_ct.nii.gz", "", "", cohort["seeds"], "",
                         ""])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        command = subprocess.run(
            [sys.executable, "-m", "boneqct.cli", "batch", str(manifest), "--out",
             str(tmp_path / "out"), "--scheduler", cluster.scheduler_address,
             "--threads-per-case", "2"],
            capture_output=True, text=True, timeout=300)
        worker_pids = {str(nanny.process.pid) for nanny in cluster.workers.values()}
    assert command.returncode == 0, command.stderr
    assert "2 cases: 2 ok" in command.stdout
    record = read_run_log(tmp_path / "out")["c2"]
    assert record["status"] == "ok" and record["worker"].split(":")[-1] in worker_pids
    assert record["threads"] == 2  # the option's, not the default (1 by address)
    with open(tmp_path / "out" / "summary.csv") as handle:
        vfa = next(r for r in csv.DictReader(handle) if r["case_id"] == "v1")
    # L1's superior and L3's inferior endplates lie 1.3-1.7 mm inside the scan's last and
    # first slices: too little disc beyond them for the subvoxel endplate fit, which is
    # flagged, so they get heights but no grade; L2 is graded 0 (its heights within 0.01 mm)
    assert (vfa["vfa_levels_graded"], vfa["vfa_max_genant_grade"], vfa["vfa_fractured_levels"]) \
        == ("1", "0", "")
    assert json.loads((tmp_path / "out" / "c2" / "spine.json").read_text()) == \
        json.loads((cohort["root"] / "out" / "c2" / "spine.json").read_text())


@pytest.mark.parametrize("header, row, message", [
    ("case_id,analysis,phantom", "a,spine,x", "no column ct"),
    ("case_id,ct,roi_thickness_mm", "a,x.nii.gz,50", "row 1 (case a): argument "
                                                      "--roi-thickness-mm: 50 is outside 3-20"),
    ("case_id,ct,seed,element_mm", "a,x.nii.gz,L1=0,0,0,1", "more cells than the header"),
    ("case_id,ct,seed,element_mm", 'a,x.nii.gz,"L1=0,0,0",1', "column 'element_mm' is not an "
                                                             "option of `boneqct spine`"),
    ("case_id,ct,analysis", "a,x.nii.gz,dxa", "analysis 'dxa' is not one of"),
    ("case_id,ct,seed", "../a,x.nii.gz,L1=0;0", "cannot name a folder"),
    ("case_id,ct,hu", "a,x.nii.gz,maybe", "'maybe' is not yes or no"),
    ("case_id,ct,timeout_s", "a,x.nii.gz,0", "column timeout_s: 0 is outside 1-604800 s"),
])
def test_bad_manifest_is_exit_2_naming_the_problem(tmp_path, capsys, header, row, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{header}\n{row}\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "boneqct batch: error:" in error and message in error, error
    assert "Traceback" not in error and not (tmp_path / "out").exists()


def test_repeated_case_id_and_missing_manifest_are_exit_2(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text('case_id,ct,seed\na,x.nii.gz,"L1=0,0,0"\na,y.nii.gz,"L1=0,0,0"\n')
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "case_id 'a' is used twice" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out")]) == 2
    assert "Cannot read the manifest 'none.csv'" in capsys.readouterr().err


def _series(folder: Path, study: str, series: str, *, n: int, spacing_mm: float, kernel: str,
            axial: bool = True) -> None:
    """A small CT series: n slices of 8 x 8 pixels, axial or sagittal."""
    ijk_to_ras = np.diag([0.8, 0.8, spacing_mm, 1.0])
    if not axial:  # slices stacked along R: sagittal
        ijk_to_ras = np.array([[0, 0, spacing_mm, 0], [0.8, 0, 0, 0], [0, 0.8, 0, 0],
                               [0, 0, 0, 1.0]])
    volume = Volume(np.zeros((n, 8, 8), np.int16), ijk_to_ras, {})
    write_dicom_series(volume, folder, study_uid=study, series_uid=series,
                       convolution_kernel=kernel, slice_thickness_mm=spacing_mm)


def test_scan_chooses_the_series_by_the_rules(tmp_path, capsys):
    studies = tmp_path / "studies"
    a, b = "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3680043.10.2"
    _series(studies / "A" / "bone", a, f"{a}.1", n=150, spacing_mm=0.6, kernel="BONE")
    _series(studies / "A" / "soft", a, f"{a}.2", n=80, spacing_mm=1.0, kernel="STANDARD")
    _series(studies / "A" / "thick", a, f"{a}.3", n=20, spacing_mm=5.0, kernel="STANDARD")
    _series(studies / "A" / "short", a, f"{a}.4", n=40, spacing_mm=0.5, kernel="SOFT")
    _series(studies / "A" / "sag", a, f"{a}.5", n=120, spacing_mm=1.0, kernel="STANDARD",
            axial=False)
    _series(studies / "B", b, f"{b}.1", n=12, spacing_mm=2.0, kernel="B30f")  # 22 mm
    manifest = tmp_path / "cohort.csv"
    assert main(["batch", "--scan", str(studies), "--out", str(manifest),
                 "--analysis", "tissue"]) == 0
    assert "1 of 2 studies" in capsys.readouterr().out
    cases = read_manifest(manifest)
    assert [(Path(c.ct).name, c.settings["inputs"]["series"]) for c in cases] == \
        [("soft", f"{a}.2")]
    with open(tmp_path / "cohort_candidates.csv") as handle:
        candidates = {r["series_uid"]: r for r in csv.DictReader(handle)}
    assert candidates[f"{a}.2"]["chosen"] == "yes"
    assert candidates[f"{a}.1"]["reason"].startswith("eligible, ranked 3: sharp kernel")
    assert candidates[f"{a}.3"]["reason"].startswith("eligible, ranked 2: soft kernel, 5.0 mm")
    assert candidates[f"{a}.4"]["reason"] == "coverage 20 mm, below 70 mm"
    assert candidates[f"{a}.5"]["reason"] == "not axial (sagittal)"
    assert candidates[f"{b}.1"]["reason"] == "coverage 22 mm, below 70 mm"
    assert all(r["case_id"].startswith("study_") for r in candidates.values())


def test_a_case_beyond_its_memory_limit_fails_with_that_reason(tmp_path):
    """The case process's address space is capped: a limit far below what the command needs
    ends the case (not the worker) with the limit named."""
    from boneqct.batch.case import run_case

    record = run_case("small", ["spine", str(tmp_path / "ct.nii.gz"), "--out",
                                str(tmp_path / "out"), "--seed=L1=0,0,0"],
                      str(tmp_path / "small.log"), 120, 0.3)
    assert record["status"] == "failed"
    assert "ran out of its memory limit of 0.3 GB" in record["message"]
    assert not (tmp_path / "out").exists()


def test_a_case_whose_server_dies_fails_and_the_next_gets_a_new_server(tmp_path):
    """The worker's case server ends during a case (here killed): that case fails saying so
    (its process goes with the server), and the next case starts a new server."""
    from boneqct.batch import case

    server, _ = case._take_server(1, (), TIMEOUT_S)
    case.give_back(server)
    killer = threading.Timer(3.0, server.process.kill)
    killer.start()
    lost = case.run_case("lost", ["spine", "x.nii.gz"], str(tmp_path / "lost.log"), 120, 8,
                         test_hang=True)
    killer.join()
    assert lost["status"] == "failed"
    assert "case server ended during the case" in lost["message"]
    assert lost["elapsed_s"] == pytest.approx(3.0, abs=2.5)
    after = case.run_case("next", ["spine", str(tmp_path / "none.nii.gz"), "--out",
                                   str(tmp_path / "out"), "--seed=L1=0,0,0"],
                          str(tmp_path / "next.log"), TIMEOUT_S, 8)
    assert after["server_start_s"] > 0 and after["status"] == "failed"
    assert "none.nii.gz' does not exist" in after["message"]


def _environment_of(pid: int) -> dict[str, str]:
    """A running process's environment (Linux /proc)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_case_servers_start_with_their_workers_without_the_nannys_malloc_setting(tmp_path):
    """A LocalCluster worker starts its case server as it starts (before any case); the server
    has the batch's thread budget and not the MALLOC_TRIM_THRESHOLD_ Dask's nanny gives its
    workers (a case ran 30 % slower with it), while a value of the user's own is kept."""
    from distributed import Client, LocalCluster

    from boneqct.batch import case
    from boneqct.batch.worker_plugin import CaseServerStart

    def servers(threads, packages):
        return [(s.process.pid, s.ready) for s in case._IDLE.get((threads, packages), [])]

    def environments(threads, packages):
        return [_environment_of(s.process.pid) for s in case._IDLE[(threads, packages)]]

    packages = ("boneqct.tissue",)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      plugins=(CaseServerStart(3, packages),)) as cluster, \
            Client(cluster) as client:
        (started,) = client.run(servers, 3, packages).values()
        (worker_environment,) = client.run(lambda: dict(os.environ)).values()
        (environment,) = client.run(environments, 3, packages).values()
    assert len(started) == 1  # one server, started with the worker, before any case
    assert worker_environment["MALLOC_TRIM_THRESHOLD_"] == "65536"  # the nanny's
    (server_environment,) = environment
    assert "MALLOC_TRIM_THRESHOLD_" not in server_environment
    assert {server_environment[name] for name in THREAD_VARIABLES} == {"3"}
    mine = case._without_nanny_environment({"MALLOC_TRIM_THRESHOLD_": "1000000", "A": "1"})
    assert mine == {"MALLOC_TRIM_THRESHOLD_": "1000000", "A": "1"}
