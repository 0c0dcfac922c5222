"""Fuzz: files the user hands in - calibration JSON, markups, reference JSON, spine.json for
compare, phantom certificate, QA nominal values - with whole-file damage (empty, binary,
non-UTF-8, 10000-deep nesting, NaN literals, huge strings, a list at the top) and seeded
random structural mutations (keys dropped, nulls, wrong types, lists for objects).

Each case runs the command that reads the file, in-process under a time limit: exit 0 with
strict JSON outputs or exit 2 with a message; never a traceback, a hang or NaN in a JSON.
"""

from __future__ import annotations

import copy
import json
from importlib import resources

import pytest
from fuzz_support import check, rng_for, run_cli, small_spine_phantom

SUITE = "files"
N_RANDOM = 7

WHOLE_FILE = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "non-UTF-8": b'{"name": "\xff\xfe\xfa"}',
    "nested 10000": b"[" * 10000 + b"]" * 10000,
    "nested objects 10000": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "top-level list": b"[1, 2, 3]",
    "NaN literal": None,  # the base document with NaN in its first number
    "huge string": None,  # the base document with a 5 MB string in its first text
}

WRONG_VALUES = (None, "x", -1, 0, 1e308, [], {}, True, "NaN", [None], {"a": None})


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):
            yield from _paths(child, (*prefix, index))


def _mutate(document, rng):
    """One random structural mutation of a copy of ``document``; returns (text, what)."""
    document = copy.deepcopy(document)
    paths = [p for p, _ in _paths(document) if p]
    path = paths[rng.integers(len(paths))]
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = rng.integers(4)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
        what = "drop"
    elif action == 1 and isinstance(parent[key], dict):
        parent[key] = list(parent[key].values())
        what = "object->list"
    elif action == 2 and isinstance(parent[key], list):
        parent[key] = {str(i): v for i, v in enumerate(parent[key])}
        what = "list->object"
    else:
        parent[key] = WRONG_VALUES[rng.integers(len(WRONG_VALUES))]
        what = f"={json.dumps(parent[key])}"
    return json.dumps(document), f"{'/'.join(map(str, path))} {what}"


def _first_number_to_nan(text):
    import re

    return re.sub(r"(?<=[:\[,] )-?\d+(\.\d+)?(e-?\d+)?", "NaN", text, count=1)


def _first_string_huge(text):
    index = text.index('": "') + 4
    return text[:index] + "x" * 5_000_000 + text[index:]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_files")
    ct, seed, _ = small_spine_phantom(folder)
    calibration = folder / "calibration.json"
    assert run_cli(["calibrate", ct, "--phantom", "mindways-model3", "--out",
                    calibration]).kind == "ok"
    spine_out = folder / "spine"
    assert run_cli(["spine", ct, "--out", spine_out, "--seed", seed, "--calibration",
                    calibration]).kind == "ok"
    data = resources.files("boneqct") / "data"
    reference = {
        "name": "fuzz-spine", "site": "lumbar-spine-trabecular", "measure": "bmd_mg_cm3",
        "material": "K2HPO4", "device": "digital", "regions": "qct", "population": "none",
        "source": "this test", "not_verified": "all",
        "young_adult": {"F": {"mean": 170.0, "sd": 30.0, "age_band": "20-29"},
                        "M": {"mean": 170.0, "sd": 30.0, "age_band": "20-29"}},
        "age_bands": [{"sex": "F", "age_min": 20, "age_max": 90, "mean": 140.0, "sd": 30.0}]}
    documents = {
        "calibration": json.loads(calibration.read_text()),
        "markups": {"markups": [{"type": "Fiducial", "coordinateSystem": "RAS",
                                 "controlPoints": [{"label": "L2", "position": [
                                     float(v) for v in seed.split("=")[1].split(",")]}]}]},
        "reference": reference,
        "spine.json": json.loads((spine_out / "spine.json").read_text()),
        "certificate": json.loads((data / "phantoms" / "mindways-model3.json").read_text()),
        "qa nominal": json.loads((data / "qa" / "esp.json").read_text()),
    }
    return {"ct": ct, "seed": seed, "documents": documents,
            "spine.json": spine_out / "spine.json"}


def _command(kind, path, base, out):
    ct, seed = base["ct"], base["seed"]
    return {
        "calibration": ["spine", ct, "--out", out, "--seed", seed, "--calibration", path],
        "markups": ["spine", ct, "--out", out, "--seeds", path, "--hu"],
        "reference": ["spine", ct, "--out", out, "--seed", seed, "--slope", "1.2",
                      "--intercept", "0", "--material", "K2HPO4", "--reference", path,
                      "--age", "60", "--sex", "F"],
        "spine.json": ["compare", base["spine.json"], path, "--json"],
        "certificate": ["calibrate", ct, "--phantom", path, "--out", out / "calibration.json"],
        "qa nominal": ["qa", ct, "--hu", "--phantom-type", path, "--log", out / "qa.csv"],
    }[kind]


KINDS = ("calibration", "markups", "reference", "spine.json", "certificate", "qa nominal")

def _cases():
    cases = []
    for kind in KINDS:
        for name in WHOLE_FILE:
            cases.append((kind, "whole", name))
        for index in range(N_RANDOM):
            cases.append((kind, "random", str(index)))
    return [pytest.param(*c, id=f"{c[0]}-{c[2]}") for c in cases]


@pytest.mark.parametrize(("kind", "family", "name"), _cases())
def test_user_file(base, tmp_path, kind, family, name):
    document = base["documents"][kind]
    text = json.dumps(document)
    if family == "whole":
        raw = WHOLE_FILE[name]
        if name == "NaN literal":
            raw = _first_number_to_nan(text).encode()
        elif name == "huge string":
            raw = _first_string_huge(text).encode()
        case = f"{kind}: {name}"
    else:
        mutated, what = _mutate(document, rng_for(f"{kind}{name}"))
        raw = mutated.encode()
        case = f"{kind}: {what[:80]}"
    path = tmp_path / ("input.mrk.json" if kind == "markups" else "input.json")
    path.write_bytes(raw)
    out = tmp_path / "out"
    if kind == "qa nominal":
        out.mkdir()
    outcome = run_cli(_command(kind, path, base, out), outputs=[out],
                      json_stdout=kind == "spine.json")
    check(SUITE, f"file: {kind}", case, outcome)
