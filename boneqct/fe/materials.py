"""Material mapping: calibrated mineral density -> Young's modulus and yield stresses of bone.

The laws and the density conversions are data, ``boneqct/data/fe/material_laws.json``: for each
law its paper, the density it was fitted on (QCT K2HPO4-equivalent or wet apparent density),
modulus, compressive and tensile yield (from the same study or marked otherwise), post-yield
behaviour and validity; for each pair (calibration material, fitted density) the chain of
linear conversions, each cited. Values not checked against the primary paper here carry
``"verified": false``, and :func:`material_record` carries that flag into fe.json.

Densities enter as the calibration's material (mg/cm3 K2HPO4 or hydroxyapatite, "HA"); the
law equations take g/cm3. Moduli are in MPa, never below ``MIN_MODULUS_MPA``; yield stresses
in MPa, never below ``MIN_YIELD_MPA``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from boneqct.errors import FEError

#: Poisson's ratio of bone and PMMA (isotropic voxel models, e.g. Crawford et al. 2003).
POISSON_RATIO = 0.3
#: Modulus (MPa) given to near-empty bone elements so the stiffness matrix stays positive
#: definite; far below any trabecular bone (placeholder, configurable).
MIN_MODULUS_MPA = 1.0
#: Yield stress (MPa) floor of near-empty bone elements (placeholder: 1% strain at the modulus
#: floor), so that a law fitted to zero or below at low density still gives a yield surface.
MIN_YIELD_MPA = 0.01
#: Polymethylmethacrylate endplate layers: E = 2500 MPa, nu = 0.3 (Ogo; parosol-py); elastic.
PMMA_MODULUS_MPA = 2500.0
#: Calibration materials the chains start from.
CALIBRATION_MATERIALS = ("K2HPO4", "HA")
#: Density at which each law's equation is evaluated: mg/cm3 -> g/cm3.
G_PER_MG = 1e-3


@cache
def material_table() -> dict:
    """The material table (``boneqct/data/fe/material_laws.json``) as a dictionary."""
    text = resources.files("boneqct").joinpath("data/fe/material_laws.json").read_text()
    return json.loads(text)


def _check_material(material: str) -> None:
    if material not in CALIBRATION_MATERIALS:
        raise FEError(f"Unknown calibration material '{material}'; the finite-element model "
                      "needs a K2HPO4 or hydroxyapatite (HA) calibration.")


def density_chain(material: str, density_type: str) -> list[dict]:
    """The conversions (table entries with their ``name``) taking a density in the
    calibration's ``material`` to ``density_type`` ("qct_k2hpo4", "apparent"), in order."""
    _check_material(material)
    table = material_table()
    names = table["chains"][density_type][material]
    return [{"name": name, **table["conversions"][name]} for name in names]


def convert_density_mg_cm3(bmd_mg_cm3, material: str, density_type: str) -> np.ndarray:
    """A calibrated density (mg/cm3 of ``material``) as ``density_type`` (mg/cm3), through
    :func:`density_chain`; negative results are held at 0."""
    density = np.asarray(bmd_mg_cm3, dtype=np.float64)
    for step in density_chain(material, density_type):
        density = step["slope"] * density + step["intercept_mg_cm3"]
    return np.clip(density, 0.0, None)


def _evaluate(spec: dict, rho_g_cm3: np.ndarray, modulus_mpa: np.ndarray) -> np.ndarray:
    """A modulus or yield equation of the table: ``power`` a rho^b, ``linear`` a + b rho,
    ``strain`` (yield strain x modulus)."""
    form = spec["form"]
    if form == "power":
        return spec["a"] * rho_g_cm3 ** spec["b"]
    if form == "linear":
        return spec["a"] + spec["b"] * rho_g_cm3
    if form == "strain":
        return spec["strain"] * modulus_mpa
    raise FEError(f"Unknown equation form '{form}' in the material table.")


@dataclass(frozen=True)
class MaterialLaw:
    """One law of the material table: modulus, compressive and tensile yield of bone from the
    calibrated density, each on the density the law was fitted on.

    Attributes:
        name: the table key ("kopperdahl2002", ...).
        entry: the table entry (citation, density, modulus, yield_compression, yield_tension,
            post_yield, validity).
    """

    name: str
    entry: dict

    @property
    def citation(self) -> str:
        return self.entry["citation"]

    @property
    def density_type(self) -> str:
        return self.entry["density"]

    @property
    def post_yield_tangent_fraction(self) -> float:
        """Post-yield tangent modulus in uniaxial compression as a fraction of E (0: perfectly
        plastic)."""
        return float(self.entry["post_yield"]["tangent_fraction"])

    def density_g_cm3(self, bmd_mg_cm3, material: str) -> np.ndarray:
        """The law's density (g/cm3) of a calibrated density (mg/cm3 of ``material``)."""
        return convert_density_mg_cm3(bmd_mg_cm3, material, self.density_type) * G_PER_MG

    def _raw_modulus(self, bmd_mg_cm3, material: str) -> np.ndarray:
        return _evaluate(self.entry["modulus"], self.density_g_cm3(bmd_mg_cm3, material), None)

    def modulus_mpa(self, bmd_mg_cm3, material: str,
                    min_modulus_mpa: float = MIN_MODULUS_MPA) -> np.ndarray:
        """Young's modulus (MPa) of bone elements, held at ``min_modulus_mpa`` from below."""
        return np.maximum(self._raw_modulus(bmd_mg_cm3, material), min_modulus_mpa)

    def yield_stress_mpa(self, bmd_mg_cm3, material: str, kind: str = "compression",
                         min_modulus_mpa: float = MIN_MODULUS_MPA) -> np.ndarray:
        """Uniaxial yield stress (MPa, positive) in ``kind`` "compression" or "tension", held
        at ``MIN_YIELD_MPA`` from below."""
        spec = self.entry[f"yield_{kind}"]
        if spec["form"] == "same_as_compression":
            spec = self.entry["yield_compression"]
        rho = self.density_g_cm3(bmd_mg_cm3, material)
        modulus = self.modulus_mpa(bmd_mg_cm3, material, min_modulus_mpa)
        return np.maximum(_evaluate(spec, rho, modulus), MIN_YIELD_MPA)


@cache
def _laws() -> dict[str, MaterialLaw]:
    return {name: MaterialLaw(name, entry) for name, entry in material_table()["laws"].items()}


#: The laws by name (see the material table).
LAWS: dict[str, MaterialLaw] = _laws()


def get_law(name: str) -> MaterialLaw:
    """The material law called ``name`` (see ``LAWS``)."""
    try:
        return LAWS[name]
    except KeyError:
        raise FEError(f"Unknown density-modulus law '{name}'; choose one of "
                      f"{', '.join(LAWS)}.") from None


def yield_stress_mpa(bmd_mg_cm3, material: str, law: str = "kopperdahl2002",
                     kind: str = "compression") -> np.ndarray:
    """Uniaxial yield stress (MPa) of ``law`` (see :meth:`MaterialLaw.yield_stress_mpa`)."""
    return get_law(law).yield_stress_mpa(bmd_mg_cm3, material, kind)


def material_record(law: str, material: str) -> dict:
    """What fe.json records of the material model actually used: the law with its citation and
    equations, the calibration material, the conversion chain to the law's density in words and
    numbers, each step's citation, whether each value was verified against its primary source,
    and example values at 50, 100 and 200 mg/cm3 of the calibration material."""
    chosen = get_law(law)
    table = material_table()
    chain = density_chain(material, chosen.density_type)
    entry = chosen.entry
    unverified = [part for part in ("modulus", "yield_compression", "yield_tension", "post_yield")
                  if not entry[part].get("verified", False)]
    unverified += [step["name"] for step in chain if not step.get("verified", False)]
    examples = np.array([50.0, 100.0, 200.0])
    start = f"QCT density, {material}-equivalent (mg/cm3)"
    words = " -> ".join([start] + [f"{table['density_types'][s['to']]} ({s['equation']}; "
                                   f"{s['citation']})" for s in chain]) if chain else (
        f"{start}: used as it is (the law was fitted on it)")
    return {
        "law": law, "citation": chosen.citation, "site": entry["site"],
        "calibration_material": material,
        "fitted_density": table["density_types"][chosen.density_type],
        "density_note": entry["density_note"],
        "chain": words,
        "chain_steps": [{key: step[key] for key in ("name", "equation", "slope",
                                                     "intercept_mg_cm3", "citation", "verified")}
                        for step in chain],
        "modulus": entry["modulus"]["equation"],
        "yield_compression": {k: entry["yield_compression"][k] for k in ("equation", "source")},
        "yield_tension": {k: entry["yield_tension"][k] for k in ("equation", "source")},
        "post_yield": entry["post_yield"]["description"],
        "validity": entry["validity"],
        "unverified": unverified,
        "examples": [{"bmd_mg_cm3": float(b),
                      "law_density_g_cm3": float(chosen.density_g_cm3(b, material)),
                      "modulus_mpa": float(chosen.modulus_mpa(b, material)),
                      "yield_compression_mpa": float(chosen.yield_stress_mpa(b, material)),
                      "yield_tension_mpa": float(chosen.yield_stress_mpa(b, material, "tension"))}
                     for b in examples],
        "floors": {"min_modulus_mpa": MIN_MODULUS_MPA, "min_yield_mpa": MIN_YIELD_MPA,
                   "note": "placeholders keeping near-empty elements solvable"},
    }
