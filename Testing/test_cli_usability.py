"""The command line as a new user meets it (issue 17): level ranges and lists, negative
coordinates as typed, input mistakes caught before any work, --help with defaults and an
example, progress only on a terminal, output files readable as the umask allows, the femur
phantom from the command line, and `make demo` without the test extras."""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import boneqct.io
import boneqct.spine.pipeline
from boneqct.cli import build_parser, main
from boneqct.cli.argv import normalize_argv
from boneqct.cli.progress_display import TerminalProgress, terminal_progress
from boneqct.io import read_volume_file, write_volume
from boneqct.io.atomic import write_json_atomic, write_output_set
from boneqct.io.dicom_writer import write_dicom_series
from boneqct.phantoms import ScannerParams, make_spine_phantom
from boneqct.progress import reporting, step, track
from boneqct.volume import Volume

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spine(tmp_path_factory):
    """The digital spine phantom (L1-L3 at 50/100/200 mg/cm3, Mindways rods) as NIfTI with
    its label map, and the seeds of L1 and L2 as typed on the command line."""
    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=48), seed=3)
    folder = tmp_path_factory.mktemp("spine")
    ct = write_volume(phantom.volume, folder / "ct.nii.gz")
    labels = write_volume(phantom.labels, folder / "labels.nii.gz")
    seeds = {v["level"]: ",".join(f"{x:g}" for x in v["body_center_ras_mm"])
             for v in phantom.truth["vertebrae"]}
    truth = {v["level"]: v["trabecular_bmd_mg_cm3"] for v in phantom.truth["vertebrae"]}
    return {"ct": ct, "labels": labels, "seeds": seeds, "truth": truth}


@pytest.fixture(scope="module")
def femur(tmp_path_factory):
    """`boneqct phantom femur` run as a user would, and what it printed."""
    out = tmp_path_factory.mktemp("femur") / "phantom"
    run = _run_subprocess("phantom", "femur", "--out", out, "--format", "nifti")
    assert run.returncode == 0, run.stderr
    return {"out": out, "stdout": run.stdout,
            "truth": json.loads((out / "phantom_truth.json").read_text())}


def _run_subprocess(*args):
    return subprocess.run([sys.executable, "-m", "boneqct.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def _main(capsys, *args) -> tuple[int, str, str]:
    """``boneqct ARGS`` in-process: (exit code, stdout, stderr); argparse's exits included."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices.items())


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(normalize_argv(parser, argv))


# --- 1. level names --------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "levels"), [
    (["l1,l2"], ("L1", "L2")),
    (["L1", "L2"], ("L1", "L2")),
    (["L1-L3"], ("L1", "L2", "L3")),
    (["T12-L2"], ("T12", "L1", "L2")),
    (["l3-l1"], ("L1", "L2", "L3")),
    (["L1,", "l2"], ("L1", "L2")),
])
def test_level_ranges_and_lists_parse_to_the_levels(typed, levels):
    for flag in ("--levels", "--exclude"):
        args = _parse(["spine", "ct.nii.gz", "--out", "o", "--hu", "--seed", "L2=0,0,0",
                       flag, *typed])
        assert getattr(args, flag[2:]) == levels
        assert args.input == [Path("ct.nii.gz")]


def test_levels_typed_with_spaces_give_the_mean_of_those_levels(spine, tmp_path, capsys):
    code, out, err = _main(capsys, "spine", spine["ct"], "--phantom", "mindways-model3",
                           "--seed", "L1=" + spine["seeds"]["L1"], "--seed",
                           "L2=" + spine["seeds"]["L2"], "--seed", "L3=" + spine["seeds"]["L3"],
                           "--levels", "l2", "L3", "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    document = json.loads((tmp_path / "out" / "spine.json").read_text())
    assert document["levels_used"] == ["L2", "L3"]
    expected = (spine["truth"]["L2"] + spine["truth"]["L3"]) / 2
    assert document["mean_bmd_mg_cm3"] == pytest.approx(expected, rel=0.1)
    assert "mean L2/L3" in out


@pytest.mark.parametrize(("flag", "value"), [("--levels", "L4-L5"), ("--exclude", "T11,T12")])
def test_levels_matching_no_given_level_are_refused(spine, tmp_path, capsys, monkeypatch, flag,
                                                    value):
    monkeypatch.setattr(boneqct.spine.pipeline, "analyze_spine", _must_not_run)
    code, _, err = _main(capsys, "spine", spine["ct"], "--hu", "--seed",
                         "L1=" + spine["seeds"]["L1"], "--seed", "L2=" + spine["seeds"]["L2"],
                         flag, value, "--out", tmp_path / "out")
    assert code == 2
    assert f"{flag} {value.replace('-', ',')} names no level" in err
    assert "names no level of the input, which has L1, L2" in err
    assert not (tmp_path / "out").exists()


def test_levels_of_a_label_map_are_the_labels_it_holds(spine, tmp_path, capsys, monkeypatch):
    """The phantom's own label numbering (L1-L3 are 11-13, rods 21-25) holds none of
    TotalSegmentator's vertebra labels (27-33): --levels L1-L3 names no level of it."""
    monkeypatch.setattr(boneqct.spine.pipeline, "analyze_spine", _must_not_run)
    code, _, err = _main(capsys, "spine", spine["ct"], "--hu", "--labels", spine["labels"],
                         "--levels", "L1-L3", "--out", tmp_path / "out")
    assert code == 2 and "which has no vertebral level" in err


def _must_not_run(*args, **kwargs):
    raise AssertionError("the analysis ran although the input was refused")


# --- 2. negative coordinates ------------------------------------------------------------------

def _coordinate_options():
    """(subcommand, flag, metavar) of every option taking a point R,A,S."""
    return sorted((name, max(a.option_strings, key=len), a.metavar)
                  for name, p in _subcommands() for a in p._actions
                  if a.option_strings and "R,A,S" in str(a.metavar))


def _required_argv(name: str, but: str) -> list[str]:
    """``name`` with a value for each of its required arguments and required groups
    (positional input "ct") except ``but``."""
    parser = dict(_subcommands())[name]
    argv = [name]
    for action in parser._actions:
        if not action.option_strings and action.dest != "help":
            argv.append("ct")
        elif action.required and but not in action.option_strings:
            argv += [action.option_strings[0], str(action.choices[0]) if action.choices
                     else "L2" if "level" in action.dest else "o"]
    for group in parser._mutually_exclusive_groups:
        if group.required and not any(but in a.option_strings for a in group._group_actions):
            argv += [group._group_actions[0].option_strings[0], "o"]
    return argv


def test_the_coordinate_options_are_found():
    found = {(c, f) for c, f, _ in _coordinate_options()}
    assert {("spine", "--seed"), ("fe", "--seed"), ("repositioning", "--seed"),
            ("hip", "--seed"), ("tissue", "--l3")} <= found


@pytest.mark.parametrize(("command", "flag", "metavar"), _coordinate_options())
@pytest.mark.parametrize("form", ["space", "equals"])
def test_negative_coordinates_as_typed(command, flag, metavar, form):
    for value in ("-78.9,12,30", "-4.7,-12,-30", "-.5,1,2"):
        value = f"L2={value}" if metavar.startswith("LEVEL") else value
        typed = [flag, value] if form == "space" else [f"{flag}={value}"]
        args = _parse(_required_argv(command, flag) + typed)
        parsed = getattr(args, flag[2:])
        assert (parsed == [value]) if isinstance(parsed, list) else (parsed == value)
        assert args.input == [Path("ct")]


def test_a_left_hip_seed_with_its_minus_reaches_the_analysis(femur, tmp_path, capsys):
    """The left hip's seed (R < 0) typed with a space finds the femur; the same point
    without its minus lies in no bone (exit 2): the sign is not lost on the way."""
    calibration = femur["stdout"].splitlines()[-1].split(": ", 1)[1]
    assert calibration.startswith("--slope ")
    head = femur["truth"]["femurs"][0]["head_center_ras_mm"]
    assert head[0] < 0
    point = ",".join(f"{x:g}" for x in head)
    base = ["hip", femur["out"] / "phantom_ct.nii.gz", "--side", "left", "--quiet",
            *shlex.split(calibration)]
    code, out, err = _main(capsys, *base, "--seed", point, "--out", tmp_path / "left")
    assert code == 0, err
    neck = json.loads((tmp_path / "left" / "hip.json").read_text())["rois"]["neck"]
    assert neck["abmd_g_cm2"] == pytest.approx(femur["truth"]["neck_abmd_g_cm2"], rel=0.03)
    code, _, err = _main(capsys, *base, "--seed", point.lstrip("-"), "--out", tmp_path / "right")
    assert code == 2 and "not in bone on the requested side" in err


def test_a_negative_number_option_still_parses():
    args = _parse(["phantom", "spine", "--out", "o", "--tilt-deg", "-10"])
    assert args.tilt_deg == -10.0


# --- 3. input checks before any work ----------------------------------------------------------

def _no_ct_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the CT was read although the output place was refused")
    monkeypatch.setattr(boneqct.io, "load_ct", refuse)


@pytest.mark.parametrize("argv", [
    ["spine", "--hu", "--seed", "L2=0,-25,0"],
    ["fe", "--level", "L2", "--hu", "--seed", "L2=0,-25,0"],
    ["hip", "--side", "left", "--hu"],
    ["tissue", "--hu"],
])
def test_output_that_is_a_file_is_refused_before_the_ct_is_read(spine, tmp_path, capsys,
                                                               monkeypatch, argv):
    _no_ct_read(monkeypatch)
    existing = tmp_path / "report.pdf"
    existing.write_text("a user's file")
    code, _, err = _main(capsys, argv[0], spine["ct"], *argv[1:], "--out", existing)
    assert code == 2 and "'report.pdf' is an existing file, not a folder" in err
    assert existing.read_text() == "a user's file"


def test_output_under_a_file_is_refused(spine, tmp_path, capsys, monkeypatch):
    _no_ct_read(monkeypatch)
    (tmp_path / "notes").write_text("")
    code, _, err = _main(capsys, "spine", spine["ct"], "--hu", "--seed", "L2=0,-25,0",
                         "--out", tmp_path / "notes" / "out")
    assert code == 2 and "lies under 'notes', which is a file" in err


def test_unwritable_output_place_is_refused_before_the_ct_is_read(spine, tmp_path, capsys,
                                                                  monkeypatch):
    _no_ct_read(monkeypatch)
    if os.geteuid() != 0:
        place = tmp_path / "read-only"
        place.mkdir(mode=0o555)
    else:  # root writes through permission bits; sysfs refuses new entries even to root
        place = Path("/sys")
        probe = place / "boneqct-probe"
        try:
            probe.mkdir()
            probe.rmdir()
            pytest.skip("no folder refuses a new entry to this user here")
        except OSError:
            pass
    code, _, err = _main(capsys, "spine", spine["ct"], "--hu", "--seed", "L2=0,-25,0",
                         "--out", place / "out")
    assert code == 2 and "Cannot write into the folder" in err and "--out" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["calibrate", "{ct}", "--phantom", "mindways-model3", "--out", "{folder}"],
     "'folder' is a folder; --out takes a file name (e.g. --out folder/calibration.json)"),
    (["repositioning", "{ct}", "--hu", "--seed", "L2=0,-25,0", "--out", "{folder}"],
     "--out takes a file name"),
    (["qa", "{ct}", "--hu", "--log", "{folder}"], "--log takes a file name"),
    (["qa", "{ct}", "--hu", "--log-dir", "{file}"], "lies under 'file', which is a file"),
    (["precision", "{table}", "--out", "{file}"], "lies under 'file', which is a file"),
])
def test_output_files_in_impossible_places_are_refused_before_the_ct_is_read(
        spine, tmp_path, capsys, monkeypatch, argv, message):
    _no_ct_read(monkeypatch)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    table = tmp_path / "table.csv"
    table.write_text("subject,repeat,site,value\n1,1,L1,100\n1,2,L1,102\n2,1,L1,90\n"
                     "2,2,L1,91\n")
    code, _, err = _main(capsys, *[a.format(ct=spine["ct"], folder=tmp_path / "folder",
                                            file=tmp_path / "file", table=table) for a in argv])
    assert code == 2 and message in err
    assert list((tmp_path / "folder").iterdir()) == [] and (tmp_path / "file").read_text() == ""


@pytest.mark.parametrize("argv", [
    ["spine", "--hu", "--seed", "L2=0,-25,0", "--out", "{out}"],
    ["fe", "--level", "L2", "--hu", "--seed", "L2=0,-25,0", "--out", "{out}"],
    ["hip", "--side", "left", "--hu", "--out", "{out}"],
    ["tissue", "--hu", "--out", "{out}"],
    ["calibrate", "--phantom", "mindways-model3"],
    ["qa", "--hu", "--log-dir", "{out}"],
    ["repositioning", "--hu", "--seed", "L2=0,-25,0"],
])
def test_a_label_map_given_as_the_ct_is_named(spine, tmp_path, capsys, argv):
    argv = [a.format(out=tmp_path / "out") for a in argv]
    code, _, err = _main(capsys, argv[0], spine["labels"], *argv[1:])
    assert code == 2
    assert "'labels.nii.gz' looks like a label map, not a CT" in err and "--labels" in err
    assert not (tmp_path / "out").exists()


def test_the_ct_itself_is_not_taken_for_a_label_map(spine):
    from boneqct.io.images import refuse_label_map

    refuse_label_map(read_volume_file(spine["ct"]), "ct.nii.gz")  # no error
    water = Volume(np.full((4, 5, 6), 0, np.int16), np.eye(4))
    refuse_label_map(water, "water")  # one value: empty, not a label map


# --- 4. help ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "subparser"), _subcommands())
def test_every_help_has_defaults_and_an_example_that_parses(name, subparser):
    text = subparser.format_help()
    assert "\nexample:\n  boneqct " + name + " " in text
    example = text.split("\nexample:\n", 1)[1].strip()
    args = _parse(shlex.split(example)[1:])
    assert args.command == name
    for action in subparser._actions:
        shown = action.default not in (None, False, "", (), [], argparse.SUPPRESS)
        if action.option_strings and shown and action.help:
            assert "default" in subparser._get_formatter()._get_help_string(action), \
                (name, action.option_strings)


# --- 5. progress ------------------------------------------------------------------------------

def test_the_core_reports_nothing_without_a_reporter(capsys):
    step("a step nobody shows")
    assert list(track(range(3), "a loop")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_the_terminal_display_shows_long_steps_and_loops():
    stream = io.StringIO()
    display = TerminalProgress(stream=stream, delay_s=0.0)
    with reporting(display):
        step("FE L2: mesh")
        assert sum(track(range(4), "tissue: slices classified")) == 6
    display.close()
    text = stream.getvalue()
    assert "FE L2: mesh" in text and "tissue: slices classified" in text and "/4 [" in text


@pytest.mark.parametrize("quiet", [False, True])
def test_a_spine_run_on_a_terminal_shows_its_levels_unless_quiet(spine, tmp_path, capsys,
                                                                 monkeypatch, quiet):
    """The whole path: main -> the terminal display -> the spine pipeline's level loop (the
    display's delay set to 0 s so that the small phantom's steps are shown)."""
    import boneqct.cli.progress_display as display

    monkeypatch.setattr(display, "DELAY_S", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = _main(capsys, "spine", spine["ct"], "--hu", "--seed",
                         "L1=" + spine["seeds"]["L1"], "--seed", "L2=" + spine["seeds"]["L2"],
                         "--out", tmp_path / "out", *(["--quiet"] if quiet else []))
    assert code == 0
    assert ("spine: levels measured" in err) is not quiet


def test_no_display_with_quiet_or_without_a_terminal(monkeypatch):
    with terminal_progress(quiet=True) as display:
        assert display is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with terminal_progress(quiet=False) as display:
        assert display is None


# --- 6. permissions ---------------------------------------------------------------------------

@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                              (0o077, 0o600, 0o700),
                                                              (0o002, 0o664, 0o775)])
def test_outputs_have_the_permissions_the_umask_gives(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        single = write_json_atomic(tmp_path / "single.json", {"a": 1})
        paths = write_output_set(tmp_path / "set", "test", lambda folder: {
            "json": write_json_atomic(folder / "r.json", {"b": 2})})
        slices = write_dicom_series(Volume(np.zeros((2, 3, 4), np.int16), np.eye(4)),
                                    tmp_path / "dicom")
    finally:
        os.umask(old)
    for path in (single, paths["json"], tmp_path / "set" / "boneqct_run.json", slices[0]):
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == dir_mode


def test_a_cli_run_leaves_files_others_can_read(femur):
    """The femur phantom folder, written by the CLI under the test's umask (0o022 unless the
    runner sets another): every file readable by the group and others when the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in femur["out"].iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# --- 8. the femur phantom ---------------------------------------------------------------------

def test_phantom_femur_writes_the_hip_phantom(femur):
    labels = read_volume_file(femur["out"] / "phantom_labels.nii.gz")
    ct = read_volume_file(femur["out"] / "phantom_ct.nii.gz")
    table = femur["truth"]["label_table"]
    assert table["1"] == "femur_left" and [f["side"] for f in femur["truth"]["femurs"]] == ["left"]
    femur_hu = ct.array_kji[labels.array_kji == 1]
    assert femur_hu.size > 10_000 and ct.array_kji.min() < -900  # bone, and air around
    assert np.median(femur_hu) > 200


def test_spine_options_are_refused_for_the_femur_phantom(tmp_path, capsys):
    code, _, err = _main(capsys, "phantom", "femur", "--out", tmp_path / "p", "--tilt-deg", "5")
    assert code == 2 and "--tilt-deg" in err and not (tmp_path / "p").exists()


# --- 7. make demo -----------------------------------------------------------------------------

def test_make_demo_installs_no_test_extras_and_make_test_does():
    def planned(target):
        return subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout
    demo, test = planned("demo"), planned("test")
    install = next(line for line in demo.splitlines() if line.endswith(" -e ."))
    # the project's install shows pip's progress; only the venv's pip check is quiet
    assert "pip install --progress-bar on" in install and "--quiet" not in install
    assert "[test]" not in demo and "[batch]" not in demo
    assert any("pip install --progress-bar on" in line and line.endswith(" -e '.[test]'")
               for line in test.splitlines()) and "pytest" in test


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_that_stops_reading_is_no_error(spine, unbuffered):
    """`boneqct info CT --json | head`: the reader gone before the output is written ended
    with "error: Broken pipe ('a file'). Check the path, its permissions and the free disk
    space." (new-user review); now nothing is said and the command's own status is returned,
    whether Python buffers its output (the pipe then fails at the end) or not (at once)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    process = subprocess.Popen([sys.executable, "-m", "boneqct.cli", "info", str(spine["ct"]),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=environment)
    process.stdout.close()  # before the command has started writing
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert stderr == ""


@pytest.mark.parametrize(("command", "flag", "example"), [
    ("calibrate", "--out", "calibration.json"), ("qa", "--log", "qa_log.csv"),
    ("repositioning", "--out", "repositioning.json")])
def test_an_output_file_typed_as_a_folder_is_refused(spine, tmp_path, capsys, command, flag,
                                                     example):
    """`calibrate --out cal/` wrote a file named 'cal' (new-user review): the trailing '/'
    was dropped by Path; now a usage error naming the file it could be."""
    folder = f"{tmp_path / 'out'}/"
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(spine["ct"]), flag, folder])
    assert exit_info.value.code == 2
    assert f"naming a folder; give a file name (e.g. {folder}{example})" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
