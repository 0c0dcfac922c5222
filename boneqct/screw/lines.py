"""Planned screws as users give them: Slicer markups line files (.mrk.json) and command-line
text ``NAME=R,A,S:R,A,S`` (entry:tip, RAS mm). Every function returns ``ScrewLine`` objects
in RAS mm; markups files are read in the frame their ``coordinateSystem`` names (LPS or RAS)
and written in LPS, as current Slicer writes them."""

from __future__ import annotations

from pathlib import Path

from boneqct.errors import ScrewError
from boneqct.io.atomic import write_json_atomic
from boneqct.io.user_json import read_user_json, typed_field
from boneqct.screw.trajectory import ScrewLine, screw_line
from boneqct.spine.seeds import MARKUPS_SCHEMA_URL, markup_point_ras
from boneqct.volume import ras_to_lps

LINE_FORMAT = "NAME=R,A,S:R,A,S (entry:tip, RAS mm), e.g. L4_left=-22,-60,10:-5,-25,12"
_REMEDY = ("give a Slicer markups line file (.mrk.json): save the line markups (entry point "
           "first, tip second) from Slicer's Markups module.")


def parse_line_args(texts: list[str], length_mm: float | None = None) -> list[ScrewLine]:
    """Screws given as text ``NAME=R,A,S:R,A,S`` (RAS mm; negative numbers as typed)."""
    lines = []
    for text in texts:
        name, sep, points = str(text).partition("=")
        entry_text, colon, tip_text = points.partition(":")
        try:
            entry = [float(v) for v in entry_text.split(",")]
            tip = [float(v) for v in tip_text.split(",")]
        except ValueError:
            entry = tip = []
        if not sep or not colon or not name.strip() or len(entry) != 3 or len(tip) != 3:
            raise ScrewError(f"Cannot read the screw '{str(text)[:60]}'. Give each screw as "
                             f"{LINE_FORMAT}.")
        lines.append(screw_line(name.strip(), entry, tip, length_mm))
    return lines


def read_markups_lines(path: str | Path, length_mm: float | None = None) -> list[ScrewLine]:
    """The line markups of a Slicer markups file (type "Line", two control points: entry,
    tip) as screws named by the markups' names; other markup types are refused."""
    path = Path(path)
    what = f"'{path.name}'"
    document = read_user_json(path, _REMEDY)
    lines = []
    for n, markup in enumerate(typed_field(document, "markups", list, what), start=1):
        if not isinstance(markup, dict):
            raise ScrewError(f"{what}: an entry of 'markups' is not a markup object; {_REMEDY}")
        name = str(markup.get("name") or f"screw{n}")[:40]
        if markup.get("type") != "Line":
            raise ScrewError(f"{what}: markup '{name}' is of type "
                             f"'{str(markup.get('type'))[:20]}', not 'Line'; {_REMEDY}")
        frame = str(markup.get("coordinateSystem", "LPS")).upper()
        if frame not in ("LPS", "RAS"):
            raise ScrewError(f"{what} uses coordinate system '{frame[:10]}'; expected LPS or "
                             "RAS.")
        points = typed_field(markup, "controlPoints", list, f"{what}, line '{name}'")
        if len(points) != 2 or not all(isinstance(p, dict) for p in points):
            raise ScrewError(f"{what}: line '{name}' has {len(points)} control points; a "
                             "screw line has two (entry, tip).")
        positions = [markup_point_ras(point, frame, f"{what}, line '{name}'", ScrewError)
                     for point in points]
        lines.append(screw_line(name, positions[0], positions[1], length_mm))
    if not lines:
        raise ScrewError(f"{what} holds no line markups; {_REMEDY}")
    return lines


def write_markups_lines(lines: list[ScrewLine], path: str | Path) -> Path:
    """Write screws as Slicer line markups (one per screw, LPS), atomically."""
    markups = []
    for line in lines:
        points = [{"id": str(n), "label": f"{line.name}-{label}", "description": "",
                   "associatedNodeID": "", "position": [float(v) for v in ras_to_lps(p)],
                   "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                   "selected": True, "locked": False, "visibility": True,
                   "positionStatus": "defined"}
                  for n, (label, p) in enumerate((("entry", line.entry_ras_mm),
                                                  ("tip", line.tip_ras_mm)), start=1)]
        markups.append({"type": "Line", "name": line.name, "coordinateSystem": "LPS",
                        "coordinateUnits": "mm", "locked": False,
                        "fixedNumberOfControlPoints": True, "labelFormat": "%N-%d",
                        "lastUsedControlPointNumber": 2, "controlPoints": points,
                        "measurements": []})
    return write_json_atomic(path, {"@schema": MARKUPS_SCHEMA_URL, "markups": markups})
