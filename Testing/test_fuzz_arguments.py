"""Fuzz: every number option of every subcommand (found in ``build_parser()``, so new options
are covered without editing this file) with impossible, edge and seeded-random values, and
the options that carry numbers in text (seed points, slice ranges).

Each case runs ``boneqct.cli.main`` in-process under a time limit and must end in exit 0
with strict JSON outputs, or exit 2 with a message: never a traceback, a hang or NaN in a
JSON. NaN, infinities, 1e308, empty and non-numeric text must be refused (exit 2).
Test_cli_validation.py holds the named messages of single cases; this file goes wide.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import numpy as np
import pytest
from fuzz_support import Outcome, check, rng_for, run_cli, small_spine_phantom

from boneqct.cli import build_parser

SUITE = "arguments"

#: The fixed values tried on every number option.
FIXED_VALUES = ("nan", "inf", "-inf", "-1", "0", "1e308", "", "abc", "1e-320", str(10**30), "--")
#: Text that ``float()``/``int()`` may or may not take: each case draws some of these.
ODD_TEXT = ("NaN", "+Infinity", "-0", "1e400", "-1e400", "0x10", "1_000", " 7 ", "\u0663",
            "1e", "5,5", "1.5.2", "--", "+", "١٢", "1e-400", "9" * 400, "-" + "9" * 30)
#: Values that no number option may accept.
MUST_REFUSE = {"--", "nan", "inf", "-inf", "1e308", "", "abc", "NaN", "+Infinity", "1e400",
               "-1e400", str(10**30), "9" * 400, "-" + "9" * 30}
#: Options whose value is a random-number seed: any integer numpy takes is legitimate.
SEED_OPTIONS = {"--seed", "--random-seed"}
#: Subcommands whose full run is slow (a finite-element solve): a value shared with other
#: subcommands (the calibration options) is run in full once, elsewhere; here only parsed.
SLOW = {"fe", "fe-hip"}
SHARED = {"--slope", "--intercept"}
#: An option run in full only in some of the subcommands that take it, elsewhere only parsed:
#: ``--slice-thickness`` (calibrate records it in the calibration's provenance only).
FULL_RUNS_OF = {"--slice-thickness": {"info", "spine", "tissue", "vfa"}}
N_RANDOM = 3


def _is_number_option(action: argparse.Action) -> bool:
    kind = action.type
    return kind in (int, float) or "number_in" in getattr(kind, "__qualname__", "")


def _number_options():
    """(subcommand, option, is_int) for every number option of the parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, subparser in sorted(sub.choices.items()):
        for action in subparser._actions:
            if action.option_strings and _is_number_option(action):
                option = max(action.option_strings, key=len)
                closure = dict(zip(action.type.__code__.co_freevars,
                                   (c.cell_contents for c in action.type.__closure__ or ()), strict=False)
                               ) if hasattr(action.type, "__code__") else {}
                is_int = action.type is int or closure.get("integer", False)
                found.append((name, option, bool(is_int)))
    return found


def _random_values(name: str, is_int: bool) -> list[str]:
    rng = rng_for(name)
    values = []
    for _ in range(N_RANDOM):
        pick = rng.integers(3)
        if pick == 0:
            values.append(str(ODD_TEXT[rng.integers(len(ODD_TEXT))]))
        elif pick == 1 or is_int:
            values.append(str(int(rng.integers(-10**6, 10**6)) * int(10 ** rng.integers(0, 12))))
        else:
            values.append(f"{rng.choice([-1, 1]) * 10 ** rng.uniform(-30, 30):.6g}")
    return values


def _cases():
    cases = []
    for command, option, is_int in _number_options():
        values = list(dict.fromkeys(FIXED_VALUES + tuple(_random_values(command + option, is_int))))
        for value in values:
            cases.append(pytest.param(command, option, value,
                                      id=f"{command}{option}={value!r}"))
    return cases


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_args")
    ct, seed, _ = small_spine_phantom(folder)
    table = folder / "precision.csv"
    table.write_text("subject,repeat,site,value\n" + "".join(
        f"s{s},{r},L1,{100 + s * 10 + r * 0.5}\n" for s in range(3) for r in range(2)))
    return {"ct": ct, "seed": seed, "table": table, "folder": folder}


def _tiny_scanner(monkeypatch):
    """The phantom command on 4 slices (same code path, a fraction of the time)."""
    import boneqct.phantoms as phantoms

    original = phantoms.ScannerParams
    monkeypatch.setattr(phantoms, "ScannerParams",
                        lambda **kwargs: original(**{"n_slices": 4, **kwargs}))


def _base(command: str, option: str, inputs, out):
    """The cheapest complete command line of ``command`` that reads ``option``; the option's
    value is appended by the caller."""
    ct, seed = inputs["ct"], inputs["seed"]
    manual = ["--slope", "1.2", "--intercept", "0", "--material", "K2HPO4"]
    if option == "--slope":
        manual = ["--intercept", "0"]
    elif option == "--intercept":
        manual = ["--slope", "1.2"]
    return {
        "spine": ["spine", ct, "--out", out, "--seed", seed, *manual],
        "repositioning": ["repositioning", ct, "--seed", seed, "--runs", "2", *manual],
        "qa": ["qa", ct, "--log", out.with_suffix(".csv"), *manual],
        "tissue": ["tissue", ct, "--out", out, "--slices", "12", *manual],
        "hip": ["hip", ct, "--side", "left", "--out", out, *manual],
        "fe-hip": ["fe-hip", ct, "--side", "left", "--out", out, "--element-mm", "5", *manual],
        "fe": ["fe", ct, "--level", "L2", "--seed", seed, "--out", out, "--element-mm", "5",
               "--criterion", "linear", "--preconditioner", "jacobi", *manual],
        "phantom": ["phantom", "spine", "--out", out, "--format", "nifti"],
        "compare": ["compare", inputs["folder"] / "none1.json", inputs["folder"] / "none2.json"],
        "precision": ["precision", inputs["table"], "--out", out, "--json"],
        "qa-report": ["qa-report", inputs["folder"] / "none.csv", "--out", out],
        "batch": ["batch", "--scan", inputs["folder"], "--out", out.with_suffix(".csv")],
        "screw": ["screw", ct, "--out", out, "--line", "s=0,-35,0:0,-15,0", *manual],
        "vfa": ["vfa", ct, "--out", out, "--seed", seed],
        "detect": ["detect", ct, "--out", out],
        "info": ["info", ct, "--json"],
        "calibrate": ["calibrate", ct, "--phantom", "mindways-model3", "--out",
                      out.with_suffix(".json")],
    }[command]


@pytest.fixture(scope="module", autouse=True)
def one_parser():
    """``main`` builds its parser on every call (20 ms); the fuzz reuses one (argparse keeps
    no state between parses)."""
    import boneqct.cli

    parser = build_parser()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boneqct.cli, "build_parser", lambda: parser)
        yield parser


def _parsed_value(parser, argv: list, option: str):
    """The value argparse makes of ``option`` in ``argv``, or None when it refuses the line."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            namespace = parser.parse_args([str(a) for a in argv])
    except SystemExit:
        return None
    return getattr(namespace, option.lstrip("-").replace("-", "_"))


def _drop_option(argv: list, option: str) -> list:
    """``argv`` without ``option`` and its value (when the base already sets it)."""
    argv = list(argv)
    if option in argv:
        index = argv.index(option)
        del argv[index:index + 2]
    return argv


#: Accepted values already run in full, by (command, option, class of value): a second value
#: of the same class (zero or tiny, ordinary; by sign) is only parsed, to keep the suite fast.
_RUN_CLASSES: dict[tuple, str] = {}


def _value_class(value) -> tuple:
    value = float(value)
    size = "zero or tiny" if abs(value) < 1e-3 else "ordinary"
    return (size, np.sign(value))


@pytest.mark.parametrize(("command", "option", "value"), _cases())
def test_number_option(inputs, one_parser, tmp_path, monkeypatch, command, option, value):
    out = tmp_path / "out"
    argv = _drop_option(_base(command, option, inputs, out), option) + [f"{option}={value}"]
    must_refuse = value in MUST_REFUSE and not (option in SEED_OPTIONS and value.lstrip("-").isdigit())
    case = f"{command} {option}={value!r}"
    parsed = _parsed_value(one_parser, argv, option)
    if isinstance(parsed, (int, float)):
        key = (command, option, _value_class(parsed))
        if ((command in SLOW and option in SHARED) or key in _RUN_CLASSES
                or command not in FULL_RUNS_OF.get(option, {command})):
            # accepted and not run again: the same class of value ran in full already (or,
            # for a finite-element solve, runs in full in the other subcommands)
            outcome = Outcome("silent wrong" if must_refuse else "ok", 0, "", "", "parsed only")
            check(SUITE, "CLI numbers", case, outcome)
            return
        _RUN_CLASSES[key] = value
    if command == "phantom":
        _tiny_scanner(monkeypatch)
    outcome = run_cli(argv, outputs=[out, out.with_suffix(".csv"), tmp_path],
                      json_stdout="--json" in argv, must_refuse=must_refuse)
    check(SUITE, "CLI numbers", case, outcome)


# --- numbers inside text options: seed points, slice ranges, points ----------------------

POINTS = ("nan,0,0", "inf,-25,0", "1e308,0,0", "0,-25", "0,-25,0,0", "", ",,", "0;-25;0",
          "-1e400,0,0", "abc,0,0")
SLICES = ("nan", "-1:5", "5:2", "0:100000", "1e3", "", ":", "3:", "-3:-1", "1.5:4", "0:0",
          "99:100")


def _text_cases():
    cases = []
    for point in POINTS:
        cases.append(pytest.param(["spine", "{ct}", "--out", "{out}", "--hu", "--seed",
                                   f"L2={point}"], id=f"spine--seed=L2={point}"))
        cases.append(pytest.param(["hip", "{ct}", "--side", "left", "--out", "{out}",
                                   "--slope", "1.2", "--intercept", "0", f"--seed={point}"],
                                  id=f"hip--seed={point}"))
        cases.append(pytest.param(["tissue", "{ct}", "--out", "{out}", "--slope", "1.2",
                                   "--intercept", "0", "--slices", "12", f"--l3={point}"],
                                  id=f"tissue--l3={point}"))
    for text in SLICES:
        cases.append(pytest.param(["calibrate", "{ct}", "--phantom", "mindways-model3",
                                   "--out", "{out}.json", f"--slices={text}"],
                                  id=f"calibrate--slices={text}"))
        if text != "0:100000":  # every slice: slow, and the same path as "-1:5"
            cases.append(pytest.param(["tissue", "{ct}", "--out", "{out}", "--slope", "1.2",
                                       "--intercept", "0", f"--slices={text}"],
                                      id=f"tissue--slices={text}"))
    for seed in ("L2", "=0,-25,0", "XX=0,-25,0", "L2=0,-25,0=1", "l2 = 0 , -25 , 0"):
        cases.append(pytest.param(["spine", "{ct}", "--out", "{out}", "--hu", "--seed", seed],
                                  id=f"spine--seed={seed}"))
    for levels in ("", ",,,", "L9", "L1,L1,L1", "X" * 300):
        cases.append(pytest.param(["spine", "{ct}", "--out", "{out}", "--hu", "--seed",
                                   "{seed}", f"--levels={levels}"],
                                  id=f"spine--levels={levels[:20]}"))
    return cases


@pytest.mark.parametrize("template", _text_cases())
def test_numbers_in_text_options(inputs, tmp_path, template):
    out = tmp_path / "out"
    argv = [a.format(ct=inputs["ct"], out=out, seed=inputs["seed"]) for a in template]
    outcome = run_cli(argv, outputs=[tmp_path])
    check(SUITE, "CLI text numbers", " ".join(template[0:1] + template[-1:]), outcome)


def test_every_subcommand_with_numbers_is_covered():
    """The discovery finds the options this suite was written against (guards the walk)."""
    found = {(c, o) for c, o, _ in _number_options()}
    for expected in (("spine", "--age"), ("fe", "--element-mm"), ("hip", "--pixel-mm"),
                     ("repositioning", "--runs"), ("phantom", "--noise-hu"),
                     ("compare", "--lsc"), ("qa-report", "--baseline")):
        assert expected in found
    assert np.isfinite(len(found))
