"""The digital scanner: mineral density -> HU, tissue HU per kVp, slice profile, PSF and noise.

The density-to-HU model is the Mindways two-step calibration run backwards (QCT PRO User Guide
v5.0, as implemented in Bonelab Ogo ``ogo/calib/mindways_calibration.py``):

* a calibration rod:   ``HU = water_mg_cm3 + sigma_ref * K2HPO4_mg_cm3 + beta_ref``
* bone or tissue given as K2HPO4 in a water-like matrix: ``HU = sigma_CT * rho + beta_CT``
  with ``sigma_CT = sigma_ref - 0.2174`` and ``beta_CT = beta_ref + 999.6``.

For hydroxyapatite (HA) phantoms the rods are HA in a water-equivalent base and every
mineral density is in mg HA/cm3: ``HU = a_HA * rho_HA + b`` with ``b = beta_CT`` (no mineral)
and an ILLUSTRATIVE ``a_HA`` derived from the K2HPO4 model (``ha_slope_hu_per_mg_cm3``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from boneqct.calibration.attenuation import energy_for_k2hpo4_ratio, water_equivalent_mg_cm3

#: Mindways step 2: K2HPO4-in-water slope offset (HU per mg/cm3) and intercept offset (HU).
#: QCT PRO User Guide v5.0 via Ogo mindways_calibration.py.
SIGMA_WATER_OFFSET = 0.2174
BETA_WATER_OFFSET_HU = 999.6

# Ogo's published test fixture (Mindways Model 3 certificate 4541A/4560, docs/domain.md section 1):
# rods A..E, K2HPO4 and water-equivalent densities (mg/cm3) and measured HU at 120 kVp.
_OGO_K2HPO4_MG_CM3 = np.array([-51.83, -53.40, 58.88, 157.05, 375.83])
_OGO_WATER_MG_CM3 = np.array([1012.25, 1056.95, 1103.57, 1119.52, 923.20])
_OGO_ROD_HU = np.array([-69.5, -35.4, 176.7, 345.7, 462.9])


def _fit_ogo_fixture() -> tuple[float, float]:
    """Least-squares (sigma_ref, beta_ref) of Ogo's fixture: 1.4668 HU per mg/cm3, -1009.75 HU."""
    design = np.column_stack([_OGO_K2HPO4_MG_CM3, np.ones_like(_OGO_K2HPO4_MG_CM3)])
    (sigma_ref, beta_ref), *_ = np.linalg.lstsq(design, _OGO_ROD_HU - _OGO_WATER_MG_CM3, rcond=None)
    return float(sigma_ref), float(beta_ref)


#: (sigma_ref HU per mg/cm3, beta_ref HU) per tube voltage. 120 kVp is fitted exactly to Ogo's
#: measured fixture (see ``_fit_ogo_fixture``); 80, 100 and 140 kVp are ILLUSTRATIVE values
#: (not measured), chosen so the slope falls with kVp within the 1.2-1.9 range of definitions.py.
KVP_CALIBRATION_PRESETS: dict[int, tuple[float, float]] = {
    80: (1.85, -1012.0),
    100: (1.62, -1011.0),
    120: _fit_ogo_fixture(),
    140: (1.35, -1008.0),
}

#: Tissues rendered from the same physics as the rods (``physical_tissue_hu``).
PHYSICAL_TISSUES = ("air", "fat", "muscle", "blood")


def physical_tissue_hu(kvp: int) -> dict[str, float]:
    """HU of the ICRU-44 reference tissues under the rods' model at the kVp preset.

    The rods read ``HU = water_mg_cm3 + sigma_ref * K2HPO4_mg_cm3 + beta_ref``, which is the
    attenuation model of ``boneqct.calibration.attenuation`` at the effective energy where
    (mu/rho)_K2HPO4 / (mu/rho)_water = sigma_ref; a tissue then reads its water-equivalent
    density (NIST/ICRU-44 composition and density) plus ``beta_ref``. At 120 kVp: 75 keV, air
    -1008.7, fat -83.4, muscle 32.8, blood 45.5 HU.
    """
    sigma_ref, beta_ref = KVP_CALIBRATION_PRESETS[kvp]
    energy_kev = energy_for_k2hpo4_ratio(sigma_ref)
    return {name: float(water_equivalent_mg_cm3(name, energy_kev)) + beta_ref
            for name in PHYSICAL_TISSUES}


#: CT numbers (HU) of the non-bone compartments per kVp: air, fat, muscle and blood from the
#: rods' physics (``physical_tissue_hu``); the others fixed, ILLUSTRATIVE typical values.
TISSUE_HU_PRESETS: dict[int, dict[str, float]] = {
    kvp: {
        "skin": 30.0,
        "soft_tissue": 20.0,
        "spinal_soft_tissue": 35.0,
        "table": 200.0,
        "phantom_body": 0.0,
        **physical_tissue_hu(kvp),
    }
    for kvp in KVP_CALIBRATION_PRESETS
}


@dataclass(frozen=True)
class ScannerParams:
    """Acquisition and reconstruction of the digital scanner.

    Attributes:
        kvp: tube voltage, one of ``KVP_CALIBRATION_PRESETS`` (80, 100, 120, 140).
        pixel_mm: in-plane pixel spacing (mm), square pixels.
        matrix: image size (columns along i = patient left, rows along j = posterior).
        n_slices: number of axial slices.
        slice_spacing_mm: distance between slice centres (mm).
        slice_thickness_mm: width of the rectangular slice sensitivity profile (mm); may
            exceed the spacing.
        psf_fwhm_mm: FWHM (mm) of the in-plane Gaussian point spread function; 0 disables it.
        noise_sd_hu: SD (HU) of white Gaussian noise added after the PSF; 0 disables it.
        supersample: sub-samples per pixel edge in-plane (partial volume); sub-slices across
            the slice thickness are at least this many and no coarser than the in-plane ones,
            each pixel's sub-samples dithered across them (``dithered_offsets_mm``), so a pixel
            samples the slice profile at ``supersample**2`` times as many depths.
        fov_center_ras_mm: (x, y) RAS centre of the field of view; None centres it on the
            patient and table.
        mas: tube current-time product written to DICOM (mAs).
        convolution_kernel: reconstruction kernel name written to DICOM.
        tissue_hu: overrides of ``TISSUE_HU_PRESETS[kvp]`` entries (HU).
    """

    kvp: int = 120
    pixel_mm: float = 1.25
    matrix: tuple[int, int] = (272, 208)
    n_slices: int = 48
    slice_spacing_mm: float = 2.0
    slice_thickness_mm: float = 2.0
    psf_fwhm_mm: float = 1.0
    noise_sd_hu: float = 20.0
    supersample: int = 3
    fov_center_ras_mm: tuple[float, float] | None = None
    mas: float = 200.0
    convolution_kernel: str = "STANDARD"
    tissue_hu: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kvp not in KVP_CALIBRATION_PRESETS:
            raise ValueError(f"kvp must be one of {sorted(KVP_CALIBRATION_PRESETS)}")
        if self.supersample < 1 or self.n_slices < 1 or min(self.matrix) < 1:
            raise ValueError("supersample, n_slices and matrix sizes must be positive")
        unknown = set(self.tissue_hu) - set(TISSUE_HU_PRESETS[self.kvp])
        if unknown:
            raise ValueError(f"unknown tissue names in tissue_hu: {sorted(unknown)}")


@dataclass(frozen=True)
class Calibration:
    """The scanner's true Mindways calibration at one kVp."""

    kvp: int
    sigma_ref: float
    beta_ref: float

    @property
    def sigma_ct(self) -> float:
        """Slope (HU per mg/cm3 K2HPO4) for K2HPO4 dissolved in water."""
        return self.sigma_ref - SIGMA_WATER_OFFSET

    @property
    def beta_ct_hu(self) -> float:
        """Intercept (HU) for K2HPO4 dissolved in water."""
        return self.beta_ref + BETA_WATER_OFFSET_HU

    def tissue_hu(self, k2hpo4_mg_cm3):
        """HU of bone or tissue holding ``k2hpo4_mg_cm3`` in a water-like matrix."""
        return self.sigma_ct * np.asarray(k2hpo4_mg_cm3, float) + self.beta_ct_hu

    def rod_hu(self, k2hpo4_mg_cm3, water_mg_cm3):
        """HU of a calibration rod from its certified K2HPO4 and water densities (mg/cm3)."""
        return (np.asarray(water_mg_cm3, float) + self.sigma_ref * np.asarray(k2hpo4_mg_cm3, float)
                + self.beta_ref)

    def as_dict(self) -> dict:
        """The calibration as the truth JSON reports it."""
        return {
            "material": "K2HPO4",
            "model": "mindways-two-step",
            "kvp": self.kvp,
            "sigma_ref": self.sigma_ref,
            "beta_ref": self.beta_ref,
            "slope_hu_per_mg_cm3": self.sigma_ct,
            "intercept_hu": self.beta_ct_hu,
        }


#: (kVp, K2HPO4-equivalent / HA-equivalent density of the same bone), single-energy QCT
#: (Goodsitt 1992, Bone Miner 19:145).
K2HPO4_PER_HA_BY_KVP = ((80, 0.86), (140, 0.81))


def ha_slope_hu_per_mg_cm3(kvp: int) -> float:
    """ILLUSTRATIVE HA slope (HU per mg HA/cm3): sigma_CT times the K2HPO4/HA density ratio.

    A bone measuring rho_HA against HA measures ratio * rho_HA against K2HPO4, so at equal
    HU ``a_HA = ratio * sigma_CT``; the ratio is interpolated linearly in kVp between
    Goodsitt's 80 and 140 kVp values. At 120 kVp: 0.827 * 1.249 = 1.033 HU per mg HA/cm3.
    """
    sigma_ref, _ = KVP_CALIBRATION_PRESETS[kvp]
    (kvp_low, ratio_low), (kvp_high, ratio_high) = K2HPO4_PER_HA_BY_KVP
    ratio = float(np.interp(kvp, [kvp_low, kvp_high], [ratio_low, ratio_high]))
    return ratio * (sigma_ref - SIGMA_WATER_OFFSET)


@dataclass(frozen=True)
class HACalibration:
    """The scanner's true hydroxyapatite calibration at one kVp: HU = a * rho_HA + b."""

    kvp: int
    slope_hu_per_mg_cm3: float
    intercept_hu: float

    def tissue_hu(self, ha_mg_cm3):
        """HU of bone, a rod or the phantom base holding ``ha_mg_cm3`` in a water-like matrix."""
        return self.slope_hu_per_mg_cm3 * np.asarray(ha_mg_cm3, float) + self.intercept_hu

    def as_dict(self) -> dict:
        """The calibration as the truth JSON reports it."""
        return {"material": "HA", "model": "linear", **dataclasses.asdict(self)}


def calibration_for(scanner: ScannerParams, material: str = "K2HPO4") -> Calibration | HACalibration:
    """The true calibration of the scanner's kVp preset, in mg/cm3 of ``material``."""
    sigma_ref, beta_ref = KVP_CALIBRATION_PRESETS[scanner.kvp]
    k2hpo4 = Calibration(scanner.kvp, sigma_ref, beta_ref)
    if material == "K2HPO4":
        return k2hpo4
    if material == "HA":
        return HACalibration(scanner.kvp, ha_slope_hu_per_mg_cm3(scanner.kvp), k2hpo4.beta_ct_hu)
    raise ValueError(f"material must be 'K2HPO4' or 'HA', not {material!r}")


def tissue_hu_for(scanner: ScannerParams) -> dict[str, float]:
    """Non-bone compartment HU of the scanner's kVp preset with the scanner's overrides."""
    return {**TISSUE_HU_PRESETS[scanner.kvp], **{k: float(v) for k, v in scanner.tissue_hu.items()}}


#: FWHM / SD of a Gaussian, and the kernel half-width in SDs.
FWHM_PER_SD = 2.0 * np.sqrt(2.0 * np.log(2.0))
PSF_TRUNCATE_SD = 4.0


def subsample_offsets_mm(n: int, width_mm: float) -> np.ndarray:
    """Centres of ``n`` equal sub-intervals of an interval of ``width_mm`` centred on 0 (mm)."""
    return ((np.arange(n) + 0.5) / n - 0.5) * width_mm


def slice_profile_offsets_mm(scanner: ScannerParams) -> np.ndarray:
    """Sub-slice z offsets (mm) sampling the rectangular slice profile with equal weights: the
    centres of equal strata no wider than the in-plane sub-samples (see ``dithered_offsets_mm``)."""
    in_plane_step_mm = scanner.pixel_mm / scanner.supersample
    n_sub = max(scanner.supersample, int(np.ceil(scanner.slice_thickness_mm / in_plane_step_mm)))
    return subsample_offsets_mm(n_sub, scanner.slice_thickness_mm)


def dithered_offsets_mm(offsets_mm: np.ndarray, slice_thickness_mm: float, supersample: int,
                        fine_shape: tuple[int, int]) -> np.ndarray:
    """Sub-slice z offsets (mm) per in-plane sub-sample, shape (sub-slices, *fine_shape).

    ``offsets_mm`` are the centres of equal strata across the slice thickness; each
    in-plane sub-sample of a pixel (a ``supersample`` x ``supersample`` block of the fine
    grid, which must start on a pixel edge) moves them by its own share of a stratum, in a
    Latin square (each row and column of the block spreads across the stratum). A pixel
    then samples the profile at ``len(offsets_mm) * supersample**2`` evenly spaced depths for
    the cost of ``len(offsets_mm)``: the partial volume of an edge nearly parallel to the
    slices, which the in-plane PSF does not smooth, steps along it by 1 / (n * supersample**2)
    of its contrast instead of 1 / n (a whole sub-slice of edge height, 0.375 mm with 8
    sub-slices in a 3 mm slice). The shifts repeat every pixel, so the pixel mean removes them.
    """
    rows, cols = np.indices((supersample, supersample))
    rank = supersample * ((rows + cols) % supersample) + rows
    shift_mm = subsample_offsets_mm(supersample**2, slice_thickness_mm / len(offsets_mm))[rank]
    reps = (-(-fine_shape[0] // supersample), -(-fine_shape[1] // supersample))
    shift_mm = np.tile(shift_mm, reps)[:fine_shape[0], :fine_shape[1]]
    return np.asarray(offsets_mm)[:, None, None] + shift_mm[None]


def apply_psf(slice_hu: np.ndarray, pixel_mm: float, fwhm_mm: float) -> np.ndarray:
    """Blur a 2D image of ``pixel_mm`` pixels with an isotropic Gaussian PSF of ``fwhm_mm``.

    The kernel is the sampled Gaussian, faithful when its SD is about a pixel or more: apply
    it on the supersampled grid when the PSF is narrower than the output pixels.
    """
    if fwhm_mm <= 0:
        return slice_hu
    sigma_px = fwhm_mm / FWHM_PER_SD / pixel_mm
    return ndimage.gaussian_filter(slice_hu, sigma=sigma_px, mode="nearest",
                                   truncate=PSF_TRUNCATE_SD)


def add_noise(slice_hu: np.ndarray, noise_sd_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of SD ``noise_sd_hu`` (HU)."""
    if noise_sd_hu <= 0:
        return slice_hu
    return slice_hu + noise_sd_hu * rng.standard_normal(slice_hu.shape, dtype=np.float32)


def to_int16_hu(slice_hu: np.ndarray) -> np.ndarray:
    """Round HU to the nearest integer and store as int16 (clipped to the int16 range)."""
    info = np.iinfo(np.int16)
    return np.clip(np.rint(slice_hu), info.min, info.max).astype(np.int16)
