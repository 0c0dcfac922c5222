"""Reference data for T- and Z-scores, read from data files that name their source.

A reference file (JSON) states what it applies to - site, measure, material, device and
regions convention, population - and where its numbers come from::

    {"name": "...", "site": "lumbar-spine-trabecular" | "femoral-neck" | "total-hip" |
     "trochanter", "measure": "bmd_mg_cm3" (volumetric, QCT) | "abmd_g_cm2" (areal, DXA),
     "material": "K2HPO4" | "HA" | null (null for areal DXA values),
     "device": "who measured it, on what", "regions": "qct" | "hologic" | "lunar",
     "population": "who was measured", "source": "full citation",
     "not_verified": null | "what of this file was not checked against the primary source",
     "young_adult": {"F": {"mean": m, "sd": s, "age_band": "20-29"}, "M": {...}},
     "age_bands": [{"sex": "F", "age_min": 20, "age_max": 24, "mean": m, "sd": s}, ...]}

A measurement checks a reference with :meth:`Reference.check_applies` before any score: a
reference of another site, measure or material is refused (no T-score of a spine mg/cm3
value from a hip g/cm2 reference). T = (value - young-adult mean) / young-adult SD; Z uses the
band of the patient's sex and age. A score is only given when the file has the numbers;
otherwise it is absent and ``why`` says what is missing, so the report can say it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boneqct.data_files import bundled_names, read_named_json_text
from boneqct.errors import BoneQCTError, ReferenceMismatchError
from boneqct.io.user_json import UserFileError, finite_number, parse_user_json, typed_field

#: Site -> the measure its references give: trabecular spine vBMD by QCT, hip aBMD by DXA.
SITE_MEASURES = {"lumbar-spine-trabecular": "bmd_mg_cm3", "femoral-neck": "abmd_g_cm2",
                 "total-hip": "abmd_g_cm2", "trochanter": "abmd_g_cm2"}
MEASURE_WORDS = {"bmd_mg_cm3": "volumetric BMD (mg/cm3)", "abmd_g_cm2": "areal BMD (g/cm2)"}
REGION_CONVENTIONS = ("qct", "hologic", "lunar")


@dataclass(frozen=True)
class Reference:
    """One reference population for one site and measure (see the module docstring)."""

    name: str
    site: str
    measure: str
    material: str | None
    device: str
    regions: str
    population: str
    source: str
    not_verified: str | None
    young_adult: dict
    age_bands: tuple[dict, ...]

    def describe(self) -> str:
        """Site, measure, material, device and population in words."""
        material = f" of {self.material}" if self.material else ""
        return (f"{self.site} {MEASURE_WORDS[self.measure]}{material}, {self.device} "
                f"({self.regions} regions), {self.population}")

    def check_applies(self, site: str, measure: str | None, material: str | None) -> None:
        """Refuse this reference for a measurement of another site, measure or material.

        Args:
            site: the measured site (a key of ``SITE_MEASURES``).
            measure: "bmd_mg_cm3" or "abmd_g_cm2"; None when there is no BMD (HU only).
            material: the calibration's material ("K2HPO4", "HA", "unstated"); checked only
                against a reference that names one.

        Raises:
            ReferenceMismatchError: naming what the reference is and what was measured.
        """
        problems = []
        if measure is None:
            problems.append("this measurement is in HU only (no calibration), so there is no "
                            "BMD to score")
        elif self.site != site or self.measure != measure:
            problems.append(f"this measurement is {site} {MEASURE_WORDS[measure]}")
        elif self.material is not None and material != self.material:
            problems.append(f"this measurement is in mg/cm3 of {material}, not of "
                            f"{self.material}, and no conversion between them is applied")
        if problems:
            raise ReferenceMismatchError(
                f"The reference '{self.name}' is for {self.describe()}; {problems[0]}. No T- or "
                "Z-score is computed from a reference of another site, measure or material: "
                f"choose a reference for {site} ({', '.join(references_for_site(site)) or 'none shipped'}"
                "), or a reference JSON file in the format of boneqct/reference.py.")

    def band(self, sex: str, age_years: float) -> dict | None:
        """The age band of this sex holding ``age_years``, or None."""
        for band in self.age_bands:
            if band["sex"] == sex and band["age_min"] <= age_years <= band["age_max"]:
                return band
        return None

    def curve(self, sex: str) -> dict | None:
        """Band mid-ages with mean and SD for a chart, or None without bands for this sex."""
        bands = sorted((b for b in self.age_bands if b["sex"] == sex), key=lambda b: b["age_min"])
        if not bands:
            return None
        return {"age_years": [(b["age_min"] + b["age_max"]) / 2 for b in bands],
                "mean": [b["mean"] for b in bands], "sd": [b["sd"] for b in bands]}


def bundled_reference_names() -> list[str]:
    """Names of the reference files shipped with BoneQCT."""
    return bundled_names("reference")


def references_for_site(site: str) -> list[str]:
    """Names of the bundled references of one site."""
    return [name for name in bundled_reference_names() if load_reference(name).site == site]


def load_reference(name_or_path: str | Path) -> Reference:
    """Load a bundled reference by name, or a reference JSON file."""
    text = read_named_json_text("reference", name_or_path)
    if text is None:
        raise BoneQCTError(
            f"Unknown reference data '{name_or_path}'. The bundled references are "
            f"{', '.join(bundled_reference_names()) or '(none)'} (all hip aBMD: they serve "
            "`boneqct hip --reference nhanes3|chinese-women`); give a bundled name or a "
            "reference JSON file (see boneqct/reference.py for the format)."
        )
    what = f"The reference file '{Path(str(name_or_path)).name}'"
    data = parse_user_json(text, what, "see boneqct/reference.py for the format.")
    try:
        reference = Reference(
            name=str(data["name"]), site=str(data["site"]), measure=str(data["measure"]),
            material=data["material"], device=str(data["device"]),
            regions=str(data["regions"]), population=str(data["population"]),
            source=str(data["source"]), not_verified=data.get("not_verified"),
            young_adult={sex: _normal(value, f"young_adult.{sex}", what) for sex, value in
                         (typed_field(data, "young_adult", dict, what, required=False)
                          or {}).items()},
            age_bands=tuple(_age_band(band, what) for band in
                            typed_field(data, "age_bands", list, what, required=False) or ()),
        )
    except KeyError as exc:
        raise BoneQCTError(
            f"{what} is not valid (missing {exc!s}); it needs name, site, measure, material, "
            "device, regions, population, source and young_adult and/or age_bands with mean "
            "and sd."
        ) from None
    if (SITE_MEASURES.get(reference.site) != reference.measure
            or reference.regions not in REGION_CONVENTIONS):
        raise BoneQCTError(
            f"The reference file '{name_or_path}' gives site '{reference.site}', measure "
            f"'{reference.measure}' and regions '{reference.regions}'; the site must be one of "
            f"{', '.join(SITE_MEASURES)} with its measure ({SITE_MEASURES}), and regions one "
            f"of {', '.join(REGION_CONVENTIONS)}.")
    return reference


def _normal(value, name: str, what: str) -> dict:
    """A {mean, sd} entry with a finite mean and a positive SD."""
    if not isinstance(value, dict):
        raise UserFileError(f"{what}: '{name}' must be an object with mean and sd.")
    return {**value, "mean": finite_number(value.get("mean"), f"{name}.mean", what),
            "sd": finite_number(value.get("sd"), f"{name}.sd", what, 1e-12)}


def _age_band(band, what: str) -> dict:
    """An age band: sex F/M, age_min <= age_max within 0-130 years, mean and SD."""
    if not isinstance(band, dict) or band.get("sex") not in ("F", "M"):
        raise UserFileError(f"{what}: every age band needs sex F or M.")
    low = finite_number(band.get("age_min"), "age_bands.age_min", what, 0.0, 130.0)
    high = finite_number(band.get("age_max"), "age_bands.age_max", what, low, 130.0)
    return {**_normal(band, "age_bands", what), "age_min": low, "age_max": high}


def scores(reference: Reference | None, value: float, sex: str | None,
           age_years: float | None) -> dict:
    """T- and Z-score of ``value`` against ``reference``, each present only when computable.

    Returns a dict with ``t_score`` / ``z_score`` (when computable), ``reference`` (name and
    source) and ``why`` (a list of reasons a score is absent).
    """
    out: dict = {"why": []}
    if reference is None:
        out["why"].append("no reference data with a published source is available for this "
                          "measurement; T- and Z-scores are not given")
        return out
    out["reference"] = {"name": reference.name, "applies_to": reference.describe(),
                        "source": reference.source, "not_verified": reference.not_verified}
    if sex not in ("F", "M"):
        out["why"].append("patient sex unknown (give --sex F|M)")
        return out
    young = reference.young_adult.get(sex)
    if young:
        out["t_score"] = (value - young["mean"]) / young["sd"]
    else:
        out["why"].append(f"the reference has no young-adult values for sex {sex}")
    if age_years is None:
        out["why"].append("patient age unknown (give --age YEARS)")
    else:
        band = reference.band(sex, age_years)
        if band:
            out["z_score"] = (value - band["mean"]) / band["sd"]
        else:
            out["why"].append(f"the reference has no age band for sex {sex}, age {age_years:g}")
    return out
