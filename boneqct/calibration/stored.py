"""A calibration file written by ``boneqct calibrate --out``, read back and checked field by
field before any value of it converts a CT number (``read_calibration_file``)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from boneqct.calibration.definitions import MATERIALS, PhantomDefinition, Rod
from boneqct.calibration.fit import MATERIAL_UNSTATED, Calibration, fit_line
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
    calibration = Calibration(
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
    _check_line_follows_rods(calibration, what)
    return calibration


#: How far (relative slope, HU intercept) a phantom calibration's line may lie from the line
#: its own rods give (the JSON's floats round-trip exactly; this is rounding room only).
LINE_TOLERANCE = (1e-6, 1e-4)


def _check_line_follows_rods(calibration: Calibration, what: str) -> None:
    """Refuse a phantom calibration whose slope or intercept is not the line through its own
    rods (their certified densities and measured HU, by a linear fit, or the two-step one
    when they carry water densities): a slope edited from 1.25 to 2.5 halved every BMD and
    suggested cement (adversarial review)."""
    rods = calibration.rods
    if calibration.method != "phantom" or len(rods) < 2 or len(
            {rod["density_mg_cm3"] for rod in rods}) < 2:
        return
    fits = ["linear"] + (["mindways-two-step"] if all(
        rod.get("water_mg_cm3") is not None for rod in rods) else [])
    relative, hu = LINE_TOLERANCE
    for fit in fits:  # the file does not name its phantom's fit: either may be it
        definition = PhantomDefinition(
            name="", material=calibration.material, fit=fit, nominal_rod_diameter_mm=0.0,
            rods=tuple(Rod(rod["name"], rod["density_mg_cm3"], rod.get("water_mg_cm3"))
                       for rod in rods))
        slope, intercept, _, _ = fit_line(definition, [rod["measured_hu"] for rod in rods])
        if (abs(slope - calibration.slope_hu_per_mg_cm3) <= relative * abs(slope)
                and abs(intercept - calibration.intercept_hu) <= hu):
            return
    raise UserFileError(
        f"{what} states slope {calibration.slope_hu_per_mg_cm3:g} HU per mg/cm3 and intercept "
        f"{calibration.intercept_hu:g} HU, but its rods give {slope:.6g} and {intercept:.6g}: "
        "the file was changed after it was written. Calibrate again (boneqct calibrate --out), "
        "or give a manual line with --slope and --intercept.")


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
