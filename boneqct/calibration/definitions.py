"""Calibration phantom definitions, read from data files.

Each phantom is one JSON file in ``boneqct/data/phantoms`` (name, material, fit model,
rods with certified densities, nominal rod diameter, layout, source). A user passes either
one of the bundled names or the path of their own certificate file in the same format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from boneqct.data_files import bundled_names, read_named_json_text
from boneqct.errors import CalibrationError

MATERIALS = ("K2HPO4", "HA")
FIT_MODELS = ("mindways-two-step", "linear")
#: Nominal rod diameters (mm) a certificate may give: the bundled phantoms' rods are 15-20 mm
#: (project bound; a rod of 0 or 2000 mm failed inside the detector instead).
ROD_DIAMETER_RANGE_MM = (3.0, 60.0)


@dataclass(frozen=True)
class Rod:
    """One rod: certified mineral density (mg/cm3) and, for K2HPO4 phantoms, water (mg/cm3)."""

    name: str
    density_mg_cm3: float
    water_mg_cm3: float | None = None


@dataclass(frozen=True)
class PhantomDefinition:
    """A calibration phantom as its certificate describes it."""

    name: str
    material: str
    fit: str
    rods: tuple[Rod, ...]
    nominal_rod_diameter_mm: float
    source: str = ""
    description: str = ""

    @property
    def density_order(self) -> list[int]:
        """Rod indices sorted by the HU they should show, lowest first.

        For K2HPO4 rods HU ~ water + sigma_ref * K2HPO4 + beta_ref, with sigma_ref about
        1.2-1.9 HU per mg/cm3 across 80-140 kVp (Ogo's published fixture gives 1.45 at 120 kVp);
        1.4 orders every certificate we know the same way as the scanner does.
        """
        def expected(rod: Rod) -> float:
            return (rod.water_mg_cm3 or 0.0) + 1.4 * rod.density_mg_cm3
        return sorted(range(len(self.rods)), key=lambda i: expected(self.rods[i]))


def bundled_phantom_names() -> list[str]:
    """Names of the phantom definitions shipped with BoneQCT."""
    return bundled_names("phantoms")


def load_phantom_definition(name_or_path: str | Path) -> PhantomDefinition:
    """Load a bundled phantom by name (e.g. ``mindways-model3``) or a certificate JSON file."""
    try:
        text = read_named_json_text("phantoms", name_or_path)
    except UnicodeDecodeError:
        raise CalibrationError(f"The phantom certificate '{Path(str(name_or_path)).name}' is "
                               "not UTF-8 text (binary or damaged); give a certificate JSON "
                               "file in the format of those in boneqct/data/phantoms.") from None
    if text is None:
        raise CalibrationError(
            f"Unknown calibration phantom '{name_or_path}'. Use one of "
            f"{', '.join(bundled_phantom_names())}, or give the path of a certificate JSON file "
            "in the same format as those in boneqct/data/phantoms."
        )
    from boneqct.io.user_json import parse_user_json

    data = parse_user_json(text, f"The phantom certificate '{Path(str(name_or_path)).name}'",
                           "give a certificate JSON file in the format of those in "
                           "boneqct/data/phantoms.")
    try:
        rods = tuple(
            Rod(str(r["name"]), float(r["density_mg_cm3"]),
                None if r.get("water_mg_cm3") is None else float(r["water_mg_cm3"]))
            for r in data["rods"]
        )
        definition = PhantomDefinition(
            name=str(data["name"]), material=str(data["material"]), fit=str(data["fit"]),
            rods=rods, nominal_rod_diameter_mm=float(data["nominal_rod_diameter_mm"]),
            source=str(data.get("source", "")), description=str(data.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"The phantom certificate '{name_or_path}' is not valid ({exc!s}). It needs name, "
            "material, fit, nominal_rod_diameter_mm and rods with name and density_mg_cm3."
        ) from None
    if definition.material not in MATERIALS or definition.fit not in FIT_MODELS:
        raise CalibrationError(
            f"The phantom certificate '{name_or_path}' names material '{definition.material}' "
            f"and fit '{definition.fit}'; material must be one of {MATERIALS} and fit one of "
            f"{FIT_MODELS}."
        )
    if definition.fit == "mindways-two-step" and any(r.water_mg_cm3 is None for r in rods):
        raise CalibrationError(
            f"The phantom certificate '{name_or_path}' uses the two-step K2HPO4 fit, which needs "
            "water_mg_cm3 for every rod."
        )
    problem = _certificate_problem(definition)
    if problem:
        raise CalibrationError(f"The phantom certificate '{name_or_path}' {problem}; correct "
                               "it from the phantom's certificate.")
    return definition


def _certificate_problem(definition: PhantomDefinition) -> str | None:
    """What makes a certificate unusable for a calibration line, or None: too few rods, a
    name twice (the rods are matched to the scan by name), densities that are not finite or
    not at least two distinct (no line through them), or a rod diameter outside
    ``ROD_DIAMETER_RANGE_MM``."""
    names = [rod.name for rod in definition.rods]
    densities = [rod.density_mg_cm3 for rod in definition.rods]
    if len(names) < 2:
        return "lists fewer than 2 rods"
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        return f"names rod {', '.join(twice)} more than once"
    if not all(math.isfinite(d) for d in densities) or len(set(densities)) < 2:
        return "needs finite rod densities, at least two of them different"
    low, high = ROD_DIAMETER_RANGE_MM
    if not low <= definition.nominal_rod_diameter_mm <= high:
        return (f"gives a rod diameter of {definition.nominal_rod_diameter_mm:g} mm (expected "
                f"{low:g}-{high:g} mm)")
    return None
