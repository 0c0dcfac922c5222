"""Shared machinery of the fuzz suites (test_fuzz_*.py): run the CLI in-process with a
per-case time limit, classify the outcome, and build the small inputs.

Outcomes: ``ok`` (exit 0, every JSON written or printed is strict JSON), ``clear error``
(exit 2 with a message, no traceback), ``traceback`` (an exception escaped ``main`` or a
traceback was printed, or an exit code other than 0/2), ``hang`` (the time limit ran out),
``silent wrong`` (exit 0 on an input that must be refused), ``nan json`` (a JSON output holds
NaN or Infinity, or is not strict JSON).

Set ``BONEQCT_FUZZ_LOG=path`` to append one JSON line per case (suite, class, case, outcome)
for the outcome table.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boneqct.cli import main

#: Per-case time limit (s); the slowest legitimate case (a 5 mm FE model) takes about 5 s.
CASE_TIMEOUT_S = 40.0


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` swallows it."""


def _alarm(signum, frame):
    raise _Hang()


@dataclass
class Outcome:
    kind: str
    code: int | None
    stdout: str
    stderr: str
    detail: str = ""

    def explain(self) -> str:
        return (f"{self.kind} (exit {self.code}): {self.detail}\n--- stderr ---\n"
                f"{self.stderr[-2000:]}")


def _refuse_constant(name):
    raise ValueError(f"{name} in JSON")


def strict_json_problem(text: str) -> str | None:
    """None when ``text`` parses as standard JSON (no NaN/Infinity), else what is wrong."""
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        return str(exc)[:200]
    return None


def run_cli(argv: list, *, outputs: list[Path] = (), json_stdout: bool = False,
            must_refuse: bool = False, allowed_codes=(0, 2),
            timeout_s: float = CASE_TIMEOUT_S) -> Outcome:
    """Run ``boneqct.cli.main(argv)`` in-process; ``outputs`` are files or folders whose JSON
    files are checked after exit 0; ``must_refuse`` makes exit 0 a ``silent wrong``."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    code, escaped = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    except _Hang:
        return Outcome("hang", None, out.getvalue(), err.getvalue(),
                       f"no result within {timeout_s:g} s")
    except Exception:  # noqa: BLE001 - the point of the fuzz: nothing may escape main()
        escaped = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    stdout, stderr = out.getvalue(), err.getvalue()
    if escaped:
        return Outcome("traceback", None, stdout, stderr + escaped,
                       escaped.strip().splitlines()[-1][:300])
    if "Traceback (most recent call last)" in stderr or code not in allowed_codes:
        return Outcome("traceback", code, stdout, stderr, f"exit code {code}")
    if code != 0:
        if not stderr.strip():
            return Outcome("traceback", code, stdout, stderr, "exit 2 without a message")
        return Outcome("clear error", code, stdout, stderr)
    texts = []
    if json_stdout:
        texts.append(("stdout", stdout))
    for place in outputs:
        place = Path(place)
        files = sorted(place.rglob("*.json")) if place.is_dir() else (
            [place] if place.is_file() and place.suffix == ".json" else [])
        texts += [(f.name, f.read_text(errors="replace")) for f in files]
    for name, text in texts:
        problem = strict_json_problem(text)
        if problem:
            return Outcome("nan json", code, stdout, stderr, f"{name}: {problem}")
    if must_refuse:
        return Outcome("silent wrong", code, stdout, stderr, "exit 0 on an input that must be "
                       "refused")
    return Outcome("ok", code, stdout, stderr)


def record(suite: str, klass: str, case: str, outcome: Outcome) -> None:
    """Append the case's outcome to ``$BONEQCT_FUZZ_LOG`` (for the outcome table)."""
    log = os.environ.get("BONEQCT_FUZZ_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps({"suite": suite, "class": klass, "case": case,
                                     "outcome": outcome.kind, "detail": outcome.detail}) + "\n")


def check(suite: str, klass: str, case: str, outcome: Outcome) -> None:
    """Record and assert: exit 0 with strict JSON, or exit 2 with a message."""
    record(suite, klass, case, outcome)
    assert outcome.kind in ("ok", "clear error"), outcome.explain()


def small_spine_phantom(folder: Path):
    """The small spine phantom (24 slices, Mindways rods) as NIfTI; returns (path, L2 seed
    text, phantom)."""
    from boneqct.io import write_volume
    from boneqct.phantoms import ScannerParams, make_spine_phantom

    phantom = make_spine_phantom(scanner=ScannerParams(n_slices=24), seed=2)
    path = write_volume(phantom.volume, Path(folder) / "ct.nii.gz")
    l2 = next(v for v in phantom.truth["vertebrae"] if v["level"] == "L2")
    return path, "L2=" + ",".join(f"{x:.2f}" for x in l2["body_center_ras_mm"]), phantom


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded by a name, so each case list is the same on every run."""
    return np.random.default_rng(int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little"))
