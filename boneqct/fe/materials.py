"""Material mapping: calibrated mineral density -> Young's modulus and yield stress of bone.

Densities enter as the calibration's material (mg/cm3 K2HPO4 or hydroxyapatite). The laws
need either that QCT density itself (Crawford 2003) or the apparent (wet) density; the chain
QCT -> ash -> apparent density is explicit and each step cited where its constant enters:

- K2HPO4 -> ash density: Keyak et al. 1994 (J Biomed Mater Res 28:1329),
  ``rho_ash = 1.06 rho_K2HPO4 + 38.9`` mg/cm3.
- Hydroxyapatite -> ash density: HA-equivalent density is taken as ash density (HA is the
  mineral that ash weighs); an assumption, stated in the output's ``law`` description.
- Ash -> apparent density: ``rho_app = rho_ash / 0.6`` (ash fraction 0.6 of wet apparent
  density, Keyak 1994; Schileo et al. 2008 J Biomech 41:356).

Every law returns the modulus in MPa, never below ``MIN_MODULUS_MPA``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boneqct.errors import FEError

#: Poisson's ratio of bone and PMMA (isotropic voxel models, e.g. Crawford et al. 2003).
POISSON_RATIO = 0.3
#: Modulus (MPa) given to near-empty bone elements so the stiffness matrix stays positive
#: definite; far below any trabecular bone (placeholder, configurable).
MIN_MODULUS_MPA = 1.0
#: Polymethylmethacrylate endplate layers: E = 2500 MPa, nu = 0.3 (Ogo; parosol-py).
PMMA_MODULUS_MPA = 2500.0
#: Keyak et al. 1994: ash density = 1.06 x K2HPO4-equivalent density + 38.9 mg/cm3.
KEYAK_SLOPE, KEYAK_INTERCEPT_MG_CM3 = 1.06, 38.9
#: Ash fraction of apparent (wet) density (Keyak 1994; Schileo 2008).
ASH_PER_APPARENT = 0.6


def ash_density_g_cm3(bmd_mg_cm3, material: str) -> np.ndarray:
    """Ash density (g/cm3) from a QCT density (mg/cm3 of ``material``: "K2HPO4" or "HA")."""
    bmd = np.asarray(bmd_mg_cm3, dtype=np.float64)
    if material == "K2HPO4":
        ash = KEYAK_SLOPE * bmd + KEYAK_INTERCEPT_MG_CM3  # Keyak et al. 1994
    elif material == "HA":
        ash = bmd
    else:
        raise FEError(f"Unknown calibration material '{material}'; the finite-element model "
                      "needs a K2HPO4 or hydroxyapatite (HA) calibration.")
    return np.clip(ash, 0.0, None) / 1000.0


def apparent_density_g_cm3(bmd_mg_cm3, material: str) -> np.ndarray:
    """Apparent (wet) density (g/cm3) from a QCT density (mg/cm3 of ``material``)."""
    return ash_density_g_cm3(bmd_mg_cm3, material) / ASH_PER_APPARENT


def _morgan2003(bmd_mg_cm3, material):
    # Morgan et al. 2003 J Biomech 36:897, vertebra: E = 4730 rho_app^1.56 MPa.
    return 4730.0 * apparent_density_g_cm3(bmd_mg_cm3, material) ** 1.56


def _kopperdahl2002(bmd_mg_cm3, material):
    # Kopperdahl et al. 2002 J Orthop Res 20:801: E = 2980 rho_app^1.05 MPa.
    return 2980.0 * apparent_density_g_cm3(bmd_mg_cm3, material) ** 1.05


def _crawford2003(bmd_mg_cm3, material):
    # Crawford et al. 2003 Bone 33:744: E = -34.7 + 3230 rho_QCT MPa (rho_QCT in g/cm3 K2HPO4).
    if material != "K2HPO4":
        raise FEError("The Crawford 2003 law is defined on K2HPO4-equivalent QCT density; use a "
                      "K2HPO4 calibration or another law (morgan2003, kopperdahl2002).")
    return -34.7 + 3230.0 * np.asarray(bmd_mg_cm3, dtype=np.float64) / 1000.0


@dataclass(frozen=True)
class DensityModulusLaw:
    """A named density -> modulus law: ``modulus_mpa(bmd_mg_cm3, material)`` and its source."""

    name: str
    citation: str
    function: object

    def modulus_mpa(self, bmd_mg_cm3, material: str,
                    min_modulus_mpa: float = MIN_MODULUS_MPA) -> np.ndarray:
        """Young's modulus (MPa) of bone elements, clipped below at ``min_modulus_mpa``."""
        return np.maximum(self.function(bmd_mg_cm3, material), min_modulus_mpa)


LAWS: dict[str, DensityModulusLaw] = {
    "morgan2003": DensityModulusLaw(
        "morgan2003", "Morgan et al. 2003 J Biomech 36:897 (vertebra): E = 4730 rho_app^1.56 "
        "MPa; rho_app = rho_ash/0.6, rho_ash = 1.06 rho_K2HPO4 + 38.9 mg/cm3 (Keyak 1994)",
        _morgan2003),
    "kopperdahl2002": DensityModulusLaw(
        "kopperdahl2002", "Kopperdahl et al. 2002 J Orthop Res 20:801: E = 2980 rho_app^1.05 "
        "MPa; rho_app = rho_ash/0.6, rho_ash = 1.06 rho_K2HPO4 + 38.9 mg/cm3 (Keyak 1994)",
        _kopperdahl2002),
    "crawford2003": DensityModulusLaw(
        "crawford2003", "Crawford et al. 2003 Bone 33:744: E = -34.7 + 3230 rho_QCT MPa "
        "(rho_QCT in g/cm3 K2HPO4)", _crawford2003),
}


def get_law(name: str) -> DensityModulusLaw:
    """The density-modulus law called ``name`` (see ``LAWS``)."""
    try:
        return LAWS[name]
    except KeyError:
        raise FEError(f"Unknown density-modulus law '{name}'; choose one of "
                      f"{', '.join(LAWS)}.") from None


def yield_stress_mpa(bmd_mg_cm3, material: str) -> np.ndarray:
    """Compressive yield stress (MPa) of trabecular bone, Kopperdahl et al. 2002 J Orthop Res
    20:801: ``sigma_y = 37.4 rho_app^1.39`` MPa (rho_app in g/cm3, as for the modulus)."""
    return 37.4 * apparent_density_g_cm3(bmd_mg_cm3, material) ** 1.39
