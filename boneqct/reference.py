"""Reference data for T- and Z-scores, read from data files that name their source.

A reference file (JSON) describes one site and measure::

    {"name": "...", "site": "spine-qct" | "femoral-neck" | ..., "measure": "bmd_mg_cm3",
     "material": "K2HPO4" | "HA" | null, "source": "full citation",
     "young_adult": {"F": {"mean": m, "sd": s, "age_band": "20-29"}, "M": {...}},
     "age_bands": [{"sex": "F", "age_min": 20, "age_max": 24, "mean": m, "sd": s}, ...]}

T = (value - young-adult mean) / young-adult SD; Z uses the band of the patient's sex and age.
A score is only given when the file has the numbers; otherwise it is absent and ``why`` says
what is missing, so the report can say it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from boneqct.data_files import bundled_names, read_named_json_text
from boneqct.errors import BoneQCTError


@dataclass(frozen=True)
class Reference:
    """One reference population for one site and measure."""

    name: str
    site: str
    measure: str
    material: str | None
    source: str
    young_adult: dict
    age_bands: tuple[dict, ...]

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


def load_reference(name_or_path: str | Path) -> Reference:
    """Load a bundled reference by name, or a reference JSON file."""
    text = read_named_json_text("reference", name_or_path)
    if text is None:
        raise BoneQCTError(
            f"Unknown reference data '{name_or_path}'. Give one of "
            f"{', '.join(bundled_reference_names()) or '(none shipped)'} or a reference JSON file "
            "(see boneqct/reference.py for the format)."
        )
    try:
        data = json.loads(text)
        return Reference(
            name=str(data["name"]), site=str(data["site"]), measure=str(data["measure"]),
            material=data.get("material"), source=str(data["source"]),
            young_adult=dict(data.get("young_adult") or {}),
            age_bands=tuple(data.get("age_bands") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BoneQCTError(
            f"The reference file '{name_or_path}' is not valid ({exc!s}); it needs name, site, "
            "measure, source and young_adult and/or age_bands with mean and sd."
        ) from None


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
    out["reference"] = {"name": reference.name, "source": reference.source}
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
