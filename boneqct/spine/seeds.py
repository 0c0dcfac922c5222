"""Seed points of vertebral levels: Slicer markups files and command-line text.

Every function returns ``{level: position}`` with positions in RAS mm (the core's frame).
Slicer's markups JSON stores positions in the frame its ``coordinateSystem`` names ("LPS" in
files written by current Slicer, "RAS" in older ones); both are read, LPS is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boneqct.errors import SpineError
from boneqct.io.atomic import write_json_atomic
from boneqct.io.user_json import finite_number, read_user_json, typed_field
from boneqct.spine.levels import LEVEL_NAMES, normalize_level
from boneqct.volume import lps_to_ras, ras_to_lps

#: Schema URL Slicer writes at the top of a markups file (Slicer 5.x).
MARKUPS_SCHEMA_URL = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
                      "Markups/Resources/Schema/markups-schema-v1.0.3.json#")

_SEED_FORMAT = "LEVEL=R,A,S (RAS mm), e.g. L1=2.5,-30.0,112.0"


def _add_point(points: dict, label: str, position_ras_mm, source: str,
               levels: tuple[str, ...]) -> None:
    """Add one seed, rejecting names not in ``levels`` and duplicates."""
    try:
        level = normalize_level(label, levels)
    except SpineError:
        raise SpineError(f"{source}: the point label '{label}' is not a vertebral level. "
                         f"Name each point by its level ({', '.join(levels)}).") from None
    if level in points:
        raise SpineError(f"{source}: level {level} has more than one seed point. "
                         "Keep one point per level.")
    position = np.asarray(position_ras_mm, dtype=float)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise SpineError(f"{source}: the point of {level} has no valid 3D position.")
    points[level] = position


def markup_point_ras(point: dict, frame: str, where: str, error=SpineError) -> np.ndarray:
    """The position (RAS mm) of a Slicer markups control point (a dict with "position"), in
    a markup whose ``coordinateSystem`` is ``frame`` ("LPS" or "RAS"); ``error`` (an error
    class) names ``where`` when the position is not three finite numbers."""
    position = typed_field(point, "position", list, where)
    if len(position) != 3:
        raise error(f"{where}: the position has {len(position)} coordinates, not 3.")
    position = np.array([finite_number(v, "position", where) for v in position])
    return lps_to_ras(position) if frame == "LPS" else position


def read_markups_seeds(path: str | Path, levels: tuple[str, ...] = LEVEL_NAMES) -> dict[str, np.ndarray]:
    """Read seed points from a Slicer markups file (.mrk.json); positions returned in RAS mm.

    Point labels must be level names of ``levels`` (case-insensitive). Raises SpineError for an unreadable
    file, an unknown label, a duplicate level or a file with no points.
    """
    path = Path(path)
    what = f"'{path.name}'"
    document = read_user_json(path, "give a Slicer markups file (.mrk.json): save the point "
                                    "list from Slicer's Markups module.")
    points: dict[str, np.ndarray] = {}
    for markup in typed_field(document, "markups", list, what):
        if not isinstance(markup, dict):
            raise SpineError(f"{what}: an entry of 'markups' is not a markup object; save the "
                             "point list from Slicer's Markups module.")
        frame = str(markup.get("coordinateSystem", "LPS")).upper()
        if frame not in ("LPS", "RAS"):
            raise SpineError(f"{what} uses coordinate system '{frame[:10]}'; "
                             "expected LPS or RAS.")
        for point in typed_field(markup, "controlPoints", list, what, required=False) or []:
            if not isinstance(point, dict):
                raise SpineError(f"{what}: a control point is not an object.")
            label = str(point.get("label", ""))[:20]
            position = markup_point_ras(point, frame, f"{what}, point '{label}'")
            _add_point(points, label, position, what, levels)
    if not points:
        raise SpineError(f"'{path.name}' holds no points. Place one point per level, "
                         "labelled by its level (e.g. L1).")
    return points


def parse_seed_args(texts: list[str], levels: tuple[str, ...] = LEVEL_NAMES) -> dict[str, np.ndarray]:
    """Parse seeds given as text, one per level of ``levels``, in the form ``LEVEL=R,A,S``
    (RAS mm)."""
    points: dict[str, np.ndarray] = {}
    for text in texts:
        label, sep, coords = str(text).partition("=")
        try:
            position = [float(c) for c in coords.split(",")]
        except ValueError:
            position = []
        if not sep or len(position) != 3:
            raise SpineError(f"Cannot read the seed '{text}'. Give each seed as {_SEED_FORMAT}.")
        _add_point(points, label.strip(), position, f"Seed '{text}'", levels)
    return points


def write_markups_points(points: dict[str, np.ndarray], path: str | Path,
                         name: str = "Seeds") -> Path:
    """Write ``{level: RAS mm}`` as a Slicer point-list markups file (LPS), atomically."""
    control_points = []
    for n, (level, position_ras_mm) in enumerate(points.items(), start=1):
        position_lps_mm = ras_to_lps(np.asarray(position_ras_mm, dtype=float))
        control_points.append({
            "id": str(n), "label": str(level), "description": "", "associatedNodeID": "",
            "position": [float(x) for x in position_lps_mm],
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True, "locked": False, "visibility": True, "positionStatus": "defined",
        })
    document = {
        "@schema": MARKUPS_SCHEMA_URL,
        "markups": [{
            "type": "Fiducial", "name": name, "coordinateSystem": "LPS",
            "coordinateUnits": "mm", "locked": False, "fixedNumberOfControlPoints": False,
            "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(control_points),
            "controlPoints": control_points, "measurements": [],
        }],
    }
    return write_json_atomic(path, document)
