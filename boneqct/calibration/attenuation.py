"""X-ray attenuation of reference tissues and K2HPO4 at an effective energy.

Mass attenuation coefficients (cm2/g, total with coherent scattering) from the NIST tables of
Hubbell and Seltzer (X-Ray Mass Attenuation Coefficients, NIST Standard Reference Database
126, Table 4: https://physics.nist.gov/PhysRefData/XrayMassCoef/tab4.html) for the ICRU
Report 44 tissues, and from NIST XCOM for K2HPO4 by its formula, as tabulated in Bonelab Ogo
``ogo/dat/MassAttenuationTables.py`` (used there for the Michalski 2020 internal calibration).
Only 20-150 keV, the range of CT effective energies, is kept; values between the tabulated
energies are interpolated log-log (NIST's recommendation for these tables).

A scanner that sees a material at effective energy E reads (Mindways' rod model,
``boneqct.calibration.fit``, with the K2HPO4 slope ``sigma_ref`` the ratio of mass
attenuation coefficients)::

    HU = gain * water_equivalent_mg_cm3(material, E) + beta_ref_hu
    water_equivalent_mg_cm3 = 1000 * density_g_cm3 * (mu/rho)_material(E) / (mu/rho)_water(E)
    sigma_ref = gain * (mu/rho)_K2HPO4(E) / (mu/rho)_water(E)

(gain 1 and beta_ref -1000 HU for an ideal scanner).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

#: Tabulated energies (keV) of ``MASS_ATTENUATION_CM2_G``.
ENERGIES_KEV = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
#: Mass attenuation coefficients (cm2/g) at ``ENERGIES_KEV``: NIST Table 4 (ICRU-44 tissues,
#: dry air, liquid water) and NIST XCOM (K2HPO4), as tabulated in Ogo (see module docstring).
MASS_ATTENUATION_CM2_G = {
    "air": (0.7779, 0.3538, 0.2485, 0.2080, 0.1875, 0.1662, 0.1541, 0.1356),
    "fat": (0.5677, 0.3063, 0.2396, 0.2123, 0.1974, 0.1800, 0.1688, 0.1500),
    "blood": (0.8428, 0.3852, 0.2715, 0.2278, 0.2057, 0.1827, 0.1695, 0.1492),
    "cortical_bone": (4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480),
    "muscle": (0.8205, 0.3783, 0.2685, 0.2262, 0.2048, 0.1823, 0.1693, 0.1492),
    "water": (0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505),
    "K2HPO4": (6.180, 1.975, 0.9327, 0.5573, 0.3890, 0.2508, 0.1972, 0.1480),
}
#: Physical densities (g/cm3) of the reference materials: NIST Table 2 (ICRU Report 44
#: adipose tissue, whole blood, cortical bone, skeletal muscle; dry air near sea level).
DENSITY_G_CM3 = {"air": 1.205e-3, "fat": 0.95, "blood": 1.06, "cortical_bone": 1.92,
                 "muscle": 1.05, "water": 1.0}
#: Tissues with a reference composition (the ROIs an internal calibration can use).
TISSUES = ("air", "fat", "muscle", "blood", "cortical_bone")
#: Range of effective energies searched (keV): the tabulated range.
ENERGY_RANGE_KEV = (float(ENERGIES_KEV[0]), float(ENERGIES_KEV[-1]))


def mass_attenuation_cm2_g(material: str, energy_kev) -> np.ndarray:
    """(mu/rho) of ``material`` (cm2/g) at ``energy_kev`` (keV), log-log interpolated."""
    table = np.log(np.asarray(MASS_ATTENUATION_CM2_G[material]))
    return np.exp(np.interp(np.log(np.asarray(energy_kev, float)), np.log(ENERGIES_KEV), table))


def water_relative(material: str, energy_kev) -> np.ndarray:
    """(mu/rho)_material / (mu/rho)_water at ``energy_kev`` (dimensionless)."""
    return mass_attenuation_cm2_g(material, energy_kev) / mass_attenuation_cm2_g("water", energy_kev)


def water_equivalent_mg_cm3(tissue: str, energy_kev) -> np.ndarray:
    """The density of water (mg/cm3) attenuating as the reference ``tissue`` does at ``energy_kev``."""
    return 1000.0 * DENSITY_G_CM3[tissue] * water_relative(tissue, energy_kev)


def energy_for_k2hpo4_ratio(sigma_ref: float) -> float:
    """The effective energy (keV) at which (mu/rho)_K2HPO4 / (mu/rho)_water equals ``sigma_ref``.

    The ratio falls monotonically over ``ENERGY_RANGE_KEV`` (7.6 at 20 keV, 0.98 at 150 keV).
    """
    low, high = ENERGY_RANGE_KEV
    return float(optimize.brentq(lambda e: water_relative("K2HPO4", e) - sigma_ref, low, high,
                                 xtol=1e-6))
