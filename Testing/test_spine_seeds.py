"""Seed points: Slicer markups files (LPS and RAS), command-line text, level names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boneqct.errors import BoneQCTError, SpineError
from boneqct.spine.levels import LABEL_SCHEMES, LEVEL_NAMES, label_for_level, level_for_label
from boneqct.spine.seeds import (
    MARKUPS_SCHEMA_URL,
    parse_seed_args,
    read_markups_seeds,
    write_markups_points,
)


def _markups(path, frame, points):
    """Write a minimal Slicer markups file with points {label: position in `frame`}."""
    document = {"@schema": MARKUPS_SCHEMA_URL, "markups": [{
        "type": "Fiducial", "coordinateSystem": frame,
        "controlPoints": [{"label": k, "position": list(v)} for k, v in points.items()]}]}
    path.write_text(json.dumps(document))
    return path


def test_lps_and_ras_files_give_the_same_ras_points(tmp_path):
    ras = {"L1": np.array([2.0, -30.0, 110.0]), "l2": np.array([1.0, -32.0, 80.0])}
    lps = {k: v * [-1, -1, 1] for k, v in ras.items()}
    from_lps = read_markups_seeds(_markups(tmp_path / "a.mrk.json", "LPS", lps))
    from_ras = read_markups_seeds(_markups(tmp_path / "b.mrk.json", "RAS", ras))
    assert set(from_lps) == set(from_ras) == {"L1", "L2"}
    for level in from_lps:
        np.testing.assert_allclose(from_lps[level], from_ras[level])
    np.testing.assert_allclose(from_ras["L1"], ras["L1"])


def test_write_read_round_trip(tmp_path):
    points = {"L1": np.array([1.5, -20.25, 30.0]), "L3": np.array([-0.5, -30.0, -28.5])}
    path = write_markups_points(points, tmp_path / "seeds.mrk.json", name="Seeds")
    document = json.loads(path.read_text())
    assert document["@schema"] == MARKUPS_SCHEMA_URL
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    np.testing.assert_allclose(document["markups"][0]["controlPoints"][0]["position"],
                               [-1.5, 20.25, 30.0])
    back = read_markups_seeds(path)
    for level, position in points.items():
        np.testing.assert_allclose(back[level], position)


@pytest.mark.parametrize("points, message", [
    ({"F-1": [0, 0, 0]}, "not a vertebral level"),
    ({"L1": [0, 0, 0], "l1": [1, 1, 1]}, "more than one seed"),
    ({}, "holds no points"),
])
def test_bad_markups_files(tmp_path, points, message):
    with pytest.raises(SpineError, match=message):
        read_markups_seeds(_markups(tmp_path / "bad.mrk.json", "LPS", points))


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not valid JSON"),
    ('{"markups": {"controlPoints": []}}', "'markups' must be list"),
    ('{"markups": [5]}', "not a markup object"),
    ('{"markups": [{"controlPoints": [{"label": "L1", "position": [1, 2]}]}]}', "2 coordinates"),
    ('{"markups": [{"controlPoints": [{"label": "L1", "position": [1, "x", 3]}]}]}',
     "'position' must be a finite number"),
    ('{"markups": [{"controlPoints": [{"label": "L1", "position": [1, NaN, 3]}]}]}',
     "NaN is not a JSON number"),
    ('{"markups": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ("[1, 2]", "not an object"),
    ('{"markups": []}', "holds no points"),
])
def test_unreadable_markups_file(tmp_path, text, message):
    (tmp_path / "x.mrk.json").write_text(text)
    with pytest.raises(BoneQCTError, match=message):
        read_markups_seeds(tmp_path / "x.mrk.json")


def test_missing_or_binary_markups_file(tmp_path):
    with pytest.raises(BoneQCTError, match="does not exist.*Slicer markups file"):
        read_markups_seeds(tmp_path / "missing.mrk.json")
    (tmp_path / "x.mrk.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BoneQCTError, match="not UTF-8"):
        read_markups_seeds(tmp_path / "x.mrk.json")


def test_parse_seed_args():
    seeds = parse_seed_args(["L1=1,2,3", "t12 = -1.5, 0, 7e1"])
    np.testing.assert_allclose(seeds["L1"], [1, 2, 3])
    np.testing.assert_allclose(seeds["T12"], [-1.5, 0, 70])
    for bad in ("L1", "L1=1,2", "L1=a,b,c", "X9=1,2,3"):
        with pytest.raises(SpineError):
            parse_seed_args([bad])
    with pytest.raises(SpineError, match="LEVEL=R,A,S"):
        parse_seed_args(["L1:1,2,3"])
    with pytest.raises(SpineError, match="more than one"):
        parse_seed_args(["L1=1,2,3", "L1=1,2,4"])


def test_label_schemes():
    assert LEVEL_NAMES == ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
    assert level_for_label(29, "totalsegmentator") == "L3"
    assert level_for_label(22, "verse") == "L3"
    assert label_for_level("l1", "verse") == 20
    for scheme in LABEL_SCHEMES.values():
        assert sorted(scheme.values()) == sorted(LEVEL_NAMES)
    with pytest.raises(SpineError):
        level_for_label(5, "verse")
