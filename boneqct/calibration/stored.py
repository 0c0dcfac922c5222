"""A calibration file written by ``boneqct calibrate --out``, read back and checked field by
field before any value of it converts a CT number (``read_calibration_file``)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from boneqct.calibration.definitions import MATERIALS
from boneqct.calibration.fit import MATERIAL_UNSTATED, Calibration
from boneqct.io.user_json import UserFileError, finite_number, read_user_json, typed_field

REMEDY = "give a calibration JSON written by `boneqct calibrate --out`."
METHODS = ("phantom", "internal", "manual")
#: Numbers every rod entry carries (the report plots and tabulates them).
ROD_NUMBERS = ("density_mg_cm3", "measured_hu", "residual_hu", "residual_mg_cm3")


def read_calibration_file(path: str | Path) -> Calibration:
    """The Calibration stored in ``path``; UserFileError (exit 2) naming the field when the
    file is not a calibration written by BoneQCT."""
    what = f"The calibration file '{Path(path).name}'"
    document = read_user_json(path, REMEDY)
    unknown = sorted(set(document) - {f.name for f in fields(Calibration)})
    if unknown:
        raise UserFileError(f"{what} has fields a calibration does not have "
                            f"({', '.join(map(str, unknown[:5]))}); {REMEDY}")
    material = typed_field(document, "material", str, what)
    if material not in (*MATERIALS, MATERIAL_UNSTATED):
        raise UserFileError(f"{what}: material '{material[:20]}' is not one of "
                            f"{', '.join(MATERIALS)}; {REMEDY}")
    method = typed_field(document, "method", str, what, required=False) or "phantom"
    if method not in METHODS:
        raise UserFileError(f"{what}: method '{method[:20]}' is not one of {', '.join(METHODS)}.")
    r2 = document.get("r2")
    return Calibration(
        material=material, method=method,
        slope_hu_per_mg_cm3=finite_number(document.get("slope_hu_per_mg_cm3"),
                                          "slope_hu_per_mg_cm3", what),
        intercept_hu=finite_number(document.get("intercept_hu"), "intercept_hu", what),
        r2=None if r2 is None else finite_number(r2, "r2", what, 0.0, 1.0),
        rods=[_rod(rod, n, what) for n, rod in
              enumerate(typed_field(document, "rods", list, what, required=False) or [])],
        slices_used=[int(finite_number(k, "slices_used", what, 0)) for k in
                     typed_field(document, "slices_used", list, what, required=False) or []],
        per_slice=_per_slice(typed_field(document, "per_slice", dict, what, required=False), what),
        warnings=[str(w) for w in typed_field(document, "warnings", list, what, required=False)
                  or []],
        phantom=typed_field(document, "phantom", str, what, required=False),
        scan=typed_field(document, "scan", dict, what, required=False),
        applied=None,
        internal_fit=typed_field(document, "internal_fit", dict, what, required=False),
    )


def _rod(rod, n: int, what: str) -> dict:
    if not isinstance(rod, dict):
        raise UserFileError(f"{what}: rod {n + 1} is not an object; {REMEDY}")
    checked = dict(rod)
    checked["name"] = str(typed_field(rod, "name", (str, int), f"{what}, rod {n + 1}"))
    for name in ROD_NUMBERS:
        checked[name] = finite_number(rod.get(name), name, f"{what}, rod {n + 1}")
    if rod.get("water_mg_cm3") is not None:
        checked["water_mg_cm3"] = finite_number(rod["water_mg_cm3"], "water_mg_cm3",
                                                f"{what}, rod {n + 1}")
    return checked


def _per_slice(per_slice: dict | None, what: str) -> dict | None:
    """Per-slice lines: equal-length lists of finite numbers, slice indices increasing."""
    if per_slice is None:
        return None
    columns = {name: [finite_number(v, f"per_slice.{name}", what) for v in
                      typed_field(per_slice, name, list, f"{what}, per_slice")]
               for name in ("k", "slope_hu_per_mg_cm3", "intercept_hu")}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise UserFileError(f"{what}: per_slice lists are empty or of different lengths; {REMEDY}")
    k = columns["k"]
    if any(b <= a for a, b in zip(k, k[1:], strict=False)):
        raise UserFileError(f"{what}: per_slice slice indices do not increase; {REMEDY}")
    return columns
