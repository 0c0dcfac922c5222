"""Result sets written as one unit: refused output names, reruns, kills mid-write and
concurrent runs into one folder always leave one complete, consistent set."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from boneqct.errors import InputError
from boneqct.io import read_volume_file
from boneqct.io.atomic import MANIFEST_NAME, output_set


def _spine_command(folder, out, levels):
    """A fast spine run on the real tptbox cut-out (VerSe labels, HU only); ``levels`` picks
    how many levels the run reports (via a label map holding only those vertebrae)."""
    return [sys.executable, "-m", "boneqct.cli", "spine", str(folder / "ct.nii.gz"), "--out",
            str(out), "--labels", str(folder / f"labels_{levels}.nii.gz"), "--label-scheme",
            "verse", "--levels", "L3"]


@pytest.fixture(scope="module")
def inputs(real_data_dir, tmp_path_factory):
    """The tptbox CT, and label maps holding one level (L3) or two (L2, L3)."""
    source = real_data_dir / "tptbox_L3"
    folder = tmp_path_factory.mktemp("inputs")
    ct = read_volume_file(source / "sub-ct_label-22_ct.nii.gz")
    labels = read_volume_file(source / "sub-ct_seg-vert_label-22_msk.nii.gz")
    from boneqct.io import write_volume

    write_volume(ct, folder / "ct.nii.gz")
    write_volume(labels.with_array(np.where(labels.array_kji == 22, 22, 0).astype(np.uint8)),
                 folder / "labels_1.nii.gz")
    write_volume(labels.with_array(np.where(np.isin(labels.array_kji, (21, 22)),
                                            labels.array_kji, 0).astype(np.uint8)),
                 folder / "labels_2.nii.gz")
    return folder


def _consistent_levels(out) -> int:
    """Check that a spine output folder holds one complete set; return its number of levels."""
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    present = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                     if p.is_file() and p.name != MANIFEST_NAME)
    assert present == manifest["files"]
    document = json.loads((out / "spine.json").read_text())
    with open(out / "spine.csv") as handle:
        rows = list(csv.DictReader(handle))
    markups = json.loads((out / "spine_roi_centers.mrk.json").read_text())
    n_levels = len(document["levels"])
    assert len(rows) == n_levels
    measured = sum(lv["measured"] for lv in document["levels"])
    assert len(markups["markups"][0]["controlPoints"]) == measured
    assert (out / "spine_report.pdf").stat().st_size > 1000
    return n_levels


def _no_leftovers(out):
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
                and p.is_dir()]


def test_refused_output_names(inputs, tmp_path):
    existing_file = tmp_path / "file.txt"
    existing_file.write_text("not a folder")
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("my notes")
    for out, message in ((existing_file, "is an existing file"), ("", "folder name is empty"),
                         (user_folder, "did not write")):
        run = subprocess.run(_spine_command(inputs, out, 1), capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 2 and message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    assert (user_folder / "notes.txt").read_text() == "my notes"


def test_rerun_replaces_the_set_and_an_error_keeps_the_previous_one(tmp_path):
    out = tmp_path / "out"
    for n in (1, 2):
        with output_set(out, "test") as staging:
            for index in range(n):
                (staging / f"file{index}.txt").write_text(str(n))
    assert sorted(p.name for p in out.iterdir()) == ["boneqct_run.json", "file0.txt",
                                                      "file1.txt"]
    with pytest.raises(RuntimeError), output_set(out, "test") as staging:
        (staging / "file0.txt").write_text("3")
        raise RuntimeError("disk full")
    assert (out / "file0.txt").read_text() == "2"
    _no_leftovers(out)
    with pytest.raises(InputError, match="did not write"), output_set(tmp_path, "test"):
        pass


def test_a_set_moved_aside_by_a_run_killed_before_the_next_took_its_place_comes_back(tmp_path):
    out = tmp_path / "out"
    with output_set(out, "test") as staging:
        (staging / "file0.txt").write_text("1")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    # what a kill between output_set's two renames leaves: the set moved aside, none in place
    out.rename(tmp_path / f".out.old-{ended.pid}-0123abcd")
    with pytest.raises(RuntimeError), output_set(out, "test"):
        raise RuntimeError("disk full")
    assert (out / "file0.txt").read_text() == "1"
    _no_leftovers(out)


def test_a_partly_removed_set_is_not_put_back_and_odd_names_are_cleaned_up(tmp_path):
    out = tmp_path / "scan[1]"
    with output_set(out, "test") as staging:
        for index in range(3):
            (staging / f"file{index}.txt").write_text("1")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    aside = tmp_path / f".scan[1].old-{ended.pid}-0123abcd"
    out.rename(aside)
    (aside / "file1.txt").unlink()  # its removal after a completed run was cut short
    with pytest.raises(RuntimeError), output_set(out, "test"):
        raise RuntimeError("disk full")
    assert not out.exists() and not aside.exists()
    _no_leftovers(out)


def test_a_new_set_that_cannot_take_its_place_puts_the_previous_one_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with output_set(out, "test") as staging:
        (staging / "file0.txt").write_text("1")
    rename = os.rename

    def refuse_the_new_set(source, target):
        if Path(source).name.startswith(".out.staging-"):
            raise OSError(errno.EIO, "input/output error")
        rename(source, target)

    monkeypatch.setattr(os, "rename", refuse_the_new_set)
    with pytest.raises(OSError), output_set(out, "test") as staging:
        (staging / "file0.txt").write_text("2")
    monkeypatch.undo()
    assert (out / "file0.txt").read_text() == "1"
    _no_leftovers(out)


#: Runs are killed while they write their set (after the run's staging folder appears, a
#: random share of the time a complete run took from then until its set was in place) until
#: KEPT_KILLS of them have left the previous set whole, at most MAX_KILLS.
KEPT_KILLS = 2
MAX_KILLS = 20


def _run_id(out) -> str | None:
    """The run id of the set in ``out`` (None in the instant between its two renames)."""
    try:
        return json.loads((out / MANIFEST_NAME).read_text())["run_id"]
    except FileNotFoundError:
        return None


def _writing(command, out) -> subprocess.Popen:
    """Start ``command`` and return its process once it writes (its own staging folder beside
    ``out`` exists) or has ended: a kill before then would only stop its start-up."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300.0
    while process.poll() is None and not list(out.parent.glob(f".{out.name}.staging-{process.pid}-*")):
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the run did not start writing within 300 s")
        time.sleep(0.002)
    return process


def test_kills_mid_write_leave_one_complete_set(inputs, tmp_path):
    out = tmp_path / "out"
    assert subprocess.run(_spine_command(inputs, out, 1), capture_output=True,
                          timeout=300).returncode == 0
    assert _consistent_levels(out) == 1
    # how long a complete two-level run writes before its set is in place
    previous = _run_id(out)
    process = _writing(_spine_command(inputs, out, 2), out)
    started = time.monotonic()
    while _run_id(out) == previous:
        assert process.poll() in (None, 0)
        time.sleep(0.002)
    writing_s = time.monotonic() - started
    assert process.wait(timeout=300) == 0 and _consistent_levels(out) == 2
    rng = np.random.default_rng(7)
    held, kept, kills = 2, 0, 0
    while kept < KEPT_KILLS and kills < MAX_KILLS:  # each run writes the set not held
        writes = 3 - held
        process = _writing(_spine_command(inputs, out, writes), out)
        time.sleep(float(rng.uniform(0.0, 0.9 * writing_s)))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        kills += 1
        now = _consistent_levels(out)
        assert now in (held, writes)
        kept += now == held
        held = now
    # kills did land mid-write, and left the previous set whole
    assert kept == KEPT_KILLS, f"{kept} of {kills} kills left the previous set"
    # a run that completes afterwards cleans up what the killed ones left
    assert subprocess.run(_spine_command(inputs, out, 1), capture_output=True,
                          timeout=300).returncode == 0
    assert _consistent_levels(out) == 1
    _no_leftovers(out)


def test_concurrent_runs_into_one_folder(inputs, tmp_path):
    out = tmp_path / "out"
    processes = [subprocess.Popen(_spine_command(inputs, out, n), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for n in (1, 2, 1, 2)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    assert _consistent_levels(out) in (1, 2)
    _no_leftovers(out)
