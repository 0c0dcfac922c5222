"""The batch manifest: one CSV row per case, read and checked before anything runs.

Columns: ``case_id`` (the case's output folder name), ``ct`` (the CT: DICOM folder, or a
NIfTI/NRRD/MHA file), ``analysis`` (``spine``, ``hip``, ``fe``, ``tissue`` or ``vfa``;
default ``spine``), then one column per argument of the single-case command of that analysis, named
as the flag without its dashes, with underscores (``--roi-thickness-mm`` -> ``roi_thickness_mm``,
``--levels`` -> ``levels``): the measurement's ``Options`` fields (``boneqct.options``) and
the inputs of the command (``seeds``, ``seed``, ``labels``, ``phantom``, ``calibration``,
``slope``, ``intercept``, ``series``, ``side``, ``level``, ``sex``, ``age``, ``hu``,
``anonymize``...), and optionally the case's own limits, ``timeout_s`` and
``memory_limit_gb``. An empty cell keeps the command's default (or the batch's limit). Switches take yes/no (also
true/false, 1/0); repeatable arguments (``seed``) take values separated by ``;``. Relative
paths are relative to the manifest's folder.

Each row is checked by the command's own argument parser and ``Options`` class, so the batch
accepts exactly what the single-case command accepts, with the same ranges and messages.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from boneqct.errors import BoneQCTError, UserFileError
from boneqct.options import dest_of, number_in, options_from_args, options_to_dict
from boneqct.resources import MAX_MAX_MEMORY_GB, MIN_MAX_MEMORY_GB

#: Analyses a manifest row can ask for: the ``boneqct`` subcommand of each.
ANALYSES = ("spine", "hip", "fe", "tissue", "vfa")
#: The packages of ``boneqct`` each analysis runs on (beside what the command line imports): a
#: batch's case servers import those of its manifest's analyses before the first case.
ANALYSIS_PACKAGES = {"spine": ("boneqct.spine",), "vfa": ("boneqct.spine",),
                     "hip": ("boneqct.hip",), "fe": ("boneqct.fe", "boneqct.spine"),
                     "tissue": ("boneqct.tissue",)}
DEFAULT_ANALYSIS = "spine"
#: Per-case limits (columns) that replace the batch's for one case, with their ranges: a case
#: known to be long (fine FE mesh) or large gets its own.
LIMIT_COLUMNS = {"timeout_s": (1.0, 7 * 24 * 3600.0, " s"),
                 "memory_limit_gb": (MIN_MAX_MEMORY_GB, MAX_MAX_MEMORY_GB, " GB")}
#: Columns that are not arguments of the single-case command.
BASE_COLUMNS = ("case_id", "ct", "analysis", *LIMIT_COLUMNS)
#: A case id names a folder: letters, digits, '.', '_', '-'; not starting with '.'.
CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,79}")
#: Names inside a batch output folder that are not cases.
RESERVED_CASE_IDS = ("logs", "run_log.jsonl", "summary.csv", "summary.parquet",
                     "cohort_report.pdf", "cohort_report.png")
#: Arguments the batch sets itself.
BATCH_ARGUMENTS = ("input", "out", "handler", "command", "quiet")
YES, NO = ("yes", "true", "1", "y"), ("no", "false", "0", "n")


@dataclass(frozen=True)
class Case:
    """One row of a manifest, checked.

    Attributes:
        case_id: the case's name (its output folder).
        analysis: the ``boneqct`` subcommand measuring it.
        ct: the CT path (absolute).
        arguments: the single-case command's arguments after the CT and ``--out``.
        settings: every setting of the case (options with their defaults, inputs), which
            ``options_hash`` digests.
        row: the 1-based data row in the manifest.
        limits: the case's own ``timeout_s`` and ``memory_limit_gb`` (s, GB) when its row
            gives them, else the batch's apply.
    """

    case_id: str
    analysis: str
    ct: str
    arguments: tuple[str, ...]
    settings: dict = field(compare=False)
    row: int = 0
    limits: dict = field(default_factory=dict, compare=False)

    @property
    def options_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the case's settings: a changed setting re-runs a
        finished case on ``--resume``."""
        text = json.dumps({"analysis": self.analysis, **self.settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def argv(self, out_dir: str | Path) -> list[str]:
        """The full single-case command line (without the program name) writing to
        ``out_dir``."""
        return [self.analysis, self.ct, "--out", str(out_dir), *self.arguments]


def options_class(analysis: str):
    """The ``Options`` dataclass of an analysis."""
    if analysis == "spine":
        from boneqct.spine.options import SpineOptions
        return SpineOptions
    if analysis == "hip":
        from boneqct.hip.options import HipOptions
        return HipOptions
    if analysis == "fe":
        from boneqct.fe.options import FEOptions
        return FEOptions
    if analysis == "vfa":
        from boneqct.spine.fracture import FractureOptions
        return FractureOptions
    from boneqct.tissue.options import TissueOptions
    return TissueOptions


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """The single-case commands' argument parsers, by analysis."""
    from boneqct.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in ANALYSES}


def read_manifest(path: str | Path) -> list[Case]:
    """The cases of a manifest CSV, each checked as its single-case command would check it.

    Raises:
        UserFileError: the file cannot be read, lacks ``case_id`` or ``ct``, repeats a case
            id, or a row holds a value its command refuses (the message names the row, the
            case and the column).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserFileError(f"Cannot read the manifest '{path.name}': "
                            f"{getattr(exc, 'strerror', None) or exc}. Give a CSV file (UTF-8) "
                            "with the columns case_id, ct, analysis, ...") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise UserFileError(f"The manifest '{path.name}' is not a readable CSV file ({exc}).") \
            from None
    header = [] if not text.strip() else next(csv.reader(io.StringIO(text)))
    missing = [c for c in ("case_id", "ct") if c not in header]
    if missing:
        raise UserFileError(f"The manifest '{path.name}' has no column {', '.join(missing)}; "
                            "its first line names the columns: case_id, ct, analysis, then "
                            "the options (docs/batch.md).")
    if not rows:
        raise UserFileError(f"The manifest '{path.name}' lists no case; add one row per CT.")
    parsers = command_parsers()
    cases, seen = [], set()
    for number, row in enumerate(rows, start=1):
        if None in row:
            raise UserFileError(f"Manifest row {number} has more cells than the header has "
                                "columns; quote values holding commas (\"L1=0,-25,29\").")
        case = _case(row, number, path.parent.absolute(), parsers)
        if case.case_id in seen:
            raise UserFileError(f"Manifest row {number}: case_id '{case.case_id}' is used "
                                "twice; each case needs its own id (it names its folder).")
        seen.add(case.case_id)
        cases.append(case)
    return cases


def _case(row: dict, number: int, base: Path, parsers: dict) -> Case:
    """One checked manifest row."""
    case_id = (row.get("case_id") or "").strip()
    where = f"Manifest row {number}"
    if not CASE_ID_PATTERN.fullmatch(case_id) or case_id in RESERVED_CASE_IDS:
        raise UserFileError(f"{where}: case_id '{case_id[:40]}' cannot name a folder; use up "
                            "to 80 letters, digits, '.', '_' or '-' (not starting with '.', "
                            f"not {', '.join(RESERVED_CASE_IDS)}).")
    where = f"{where} (case {case_id})"
    analysis = (row.get("analysis") or "").strip() or DEFAULT_ANALYSIS
    if analysis not in ANALYSES:
        raise UserFileError(f"{where}: analysis '{analysis[:40]}' is not one of "
                            f"{', '.join(ANALYSES)}.")
    ct = (row.get("ct") or "").strip()
    if not ct:
        raise UserFileError(f"{where}: the ct cell is empty; give the CT's DICOM folder or "
                            "image file.")
    parser = parsers[analysis]
    actions = {a.dest: a for a in parser._actions
               if a.option_strings and a.dest not in BATCH_ARGUMENTS and a.dest != "help"}
    arguments = []
    for column, value in row.items():
        value = (value or "").strip()
        if column in BASE_COLUMNS or not value:
            continue
        action = actions.get(column)
        if action is None:
            raise UserFileError(f"{where}: column '{column[:40]}' is not an option of "
                                f"`boneqct {analysis}`; leave it empty for {analysis} cases. Its "
                                f"columns: {', '.join(sorted(actions))}.")
        arguments += _arguments(action, value, base, f"{where}, column {column}")
    ct_path = _resolve(ct, base)
    with contextlib.redirect_stderr(io.StringIO()) as said:
        try:
            args = parser.parse_args([ct_path, "--out", "case", *arguments])
        except SystemExit:
            message = said.getvalue().strip().splitlines()[-1:] or ["refused"]
            raise UserFileError(f"{where}: {message[0].split('error: ', 1)[-1]}.") from None
    try:
        options = options_from_args(options_class(analysis), args)
    except BoneQCTError as exc:
        raise UserFileError(f"{where}: {exc}") from None
    option_dests = {dest_of(f) for f in fields(options)}
    settings = {"options": options_to_dict(options), "inputs": {
        k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items())
        if k not in BATCH_ARGUMENTS and k not in option_dests}}
    limits = {}
    for column, (low, high, unit) in LIMIT_COLUMNS.items():
        value = (row.get(column) or "").strip()
        if value:
            try:
                limits[column] = number_in(low, high, unit)(value)
            except argparse.ArgumentTypeError as exc:
                raise UserFileError(f"{where}, column {column}: {exc}.") from None
    return Case(case_id, analysis, ct_path, tuple(arguments), settings, number, limits)


def _arguments(action: argparse.Action, value: str, base: Path, where: str) -> list[str]:
    """Command-line arguments for one manifest cell."""
    flag = action.option_strings[-1]
    if isinstance(action, argparse._StoreTrueAction):
        if value.lower() in YES:
            return [flag]
        if value.lower() in NO:
            return []
        raise UserFileError(f"{where}: '{value[:40]}' is not yes or no.")
    if (action.type is Path and value != "internal") or (
            action.dest == "phantom" and value.lower().endswith(".json")):
        value = _resolve(value, base)
    if isinstance(action, argparse._AppendAction):
        return [f"{flag}={part.strip()}" for part in value.split(";") if part.strip()]
    return [f"{flag}={value}"]


def _resolve(value: str, base: Path) -> str:
    """A path cell made absolute against the manifest's folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)
