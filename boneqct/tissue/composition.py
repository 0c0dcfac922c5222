"""Tissue composition of a slice, a slab or a whole scan (QCT PRO Tissue Analysis Report fields).

Classification, slice by slice, of the image smoothed in-plane by a Gaussian of
``SMOOTHING_SD_PX`` pixel (so that noise does not move soft tissue across the fat threshold),
inside the body outline (table and calibration phantom cut off, ``segmentation.body_outline``):

* skin: the layer of ``skin_thickness_mm`` under the outline, each pixel's fraction from its
  sub-pixel depth below the outline's mid-level (air/tissue) iso-line
  (``segmentation.outline_depth``, ``layer_fractions``); the fat and muscle below it get the
  pixel's fraction deeper than the layer (the thickness is configured, not measured);
* cortical bone: calibrated density >= ``cortical_threshold_mg_cm3``; cancellous bone: the
  holes the cortex encloses (a vertebral body's interior, whatever its density);
* fat: HU below the fat/muscle threshold, the midpoint of the fat and muscle CT values that
  the calibration predicts for the reference densities 0.923 and 1.055 g/cm3; internal air
  (below ``air_threshold_hu``) is left out;
* muscle: the remaining soft tissue up to ``LEAN_UPPER_HU`` (QCT PRO's two-compartment model
  calls all lean soft tissue "muscle": skeletal muscle, organs, blood, discs);
* subcutaneous / visceral fat: outside / inside the muscle wall, found from the outside in
  along rays from the body's centroid: skin, subcutaneous fat, then the first run of lean
  tissue (``segmentation.visceral_cavity``);
* skeletal muscle area at L3: Alberta-window pixels in the skeletal muscle mask
  (``segmentation.skeletal_muscle``: the band along the inside of the wall and the lean
  structures beside the vertebra - the back muscles' deeper part and the psoas; on the real
  slices it covers 93-99 % of the labelled back muscles and psoas), or in a given muscle mask (e.g. from a
  segmentation), on the slice nearest the L3 point.

Masses: fat and muscle volumes times their reference densities; skin volume times the ICRU 44
skin density; mineral masses are partial-volume-aware (``boneqct.tissue.mineral``): the
integral is the conserved excess density over the local soft tissue around the bone, the
cancellous part the interior trabecular density times the volume inside the inner cortical surface
of a blurred-shell body model fitted to each vertebral body,
cortical the rest (mg of the calibration's material). Cortical volume is the thresholded
cortex outside that surface (not partial-volume corrected). Areas of a slab are mean areas per slice (volume / slab thickness).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from boneqct.calibration.fit import MINDWAYS_INTERCEPT_OFFSET_HU
from boneqct.errors import TissueError
from boneqct.progress import track
from boneqct.tissue.mineral import bone_mineral
from boneqct.tissue.options import TissueOptions
from boneqct.tissue.result import TissueResult
from boneqct.tissue.segmentation import (
    body_outline,
    bone_envelope,
    layer_fractions,
    open_cortex_cancellous,
    outline_depth,
    skeletal_muscle,
    visceral_cavity,
)
from boneqct.volume import Volume, stated_slice_thickness_mm

#: Reference densities of the QCT PRO Tissue Analysis Report (docs/domain.md section 1), g/cm3.
FAT_DENSITY_G_CM3 = 0.923
MUSCLE_DENSITY_G_CM3 = 1.055
#: Skin density, ICRU Report 44 (1989), g/cm3.
SKIN_DENSITY_G_CM3 = 1.09
#: Alberta protocol skeletal-muscle window, HU (docs/domain.md section 1; Mitsiopoulos 1998).
MUSCLE_WINDOW_HU = (-29.0, 150.0)
#: Upper bound of lean soft tissue (HU), the top of the Alberta muscle window.
LEAN_UPPER_HU = MUSCLE_WINDOW_HU[1]
#: Air / tissue threshold (HU): midway between air (-1000) and soft tissue.
AIR_THRESHOLD_HU = -500.0
#: Placeholders: smallest cancellous cross-section (mm2), margin of the spine region around
#: its bone (mm). The configurable ones are in ``boneqct.tissue.options``.
MIN_CANCELLOUS_AREA_MM2 = 400.0
SPINE_MARGIN_MM = 10.0
#: Smoothed density (mg/cm3) above which a pixel inside a vertebra whose cortex does not close
#: counts as cancellous bone: above lean soft tissue (about 40-60 mg/cm3 K2HPO4-equivalent)
#: and contrast-enhanced liver (about 70 on the project's real slices). Not verified on
#: severely osteoporotic bone (trabecular density below it: no cancellous bone is found and
#: a warning says so).
TRABECULAR_MIN_MG_CM3 = 100.0
#: Plausibility (warnings, not verified): soft tissue outside the body outline above this
#: share of that inside it; trabecular density outside this range (mg/cm3).
OUTSIDE_SOFT_TISSUE_SHARE = 0.10
TRABECULAR_PLAUSIBLE_MG_CM3 = (0.0, 400.0)
#: In-plane Gaussian SD (pixels) of the smoothing before classification.
SMOOTHING_SD_PX = 1.0
TISSUES = ("fat", "muscle", "skin", "cortical_mineral", "cancellous_mineral")


def tissue_reference(calibration) -> dict:
    """Fat and muscle CT values (HU) the calibration predicts for the reference densities.

    A tissue without mineral of physical density rho (mg/cm3) has, in the Mindways convention,
    ``HU = rho + beta_ref`` with ``beta_ref = intercept_hu - 999.6`` (QCT PRO User Guide v5.0:
    rod HU = water-equivalent density + sigma_ref * K2HPO4 + beta_ref); the same is used for
    an HA phantom's line, whose intercept is its water-like base.
    """
    beta_ref_hu = calibration.intercept_hu - MINDWAYS_INTERCEPT_OFFSET_HU
    fat_hu = 1000.0 * FAT_DENSITY_G_CM3 + beta_ref_hu
    muscle_hu = 1000.0 * MUSCLE_DENSITY_G_CM3 + beta_ref_hu
    return {"fat_density_g_cm3": FAT_DENSITY_G_CM3, "muscle_density_g_cm3": MUSCLE_DENSITY_G_CM3,
            "skin_density_g_cm3": SKIN_DENSITY_G_CM3, "fat_hu": fat_hu, "muscle_hu": muscle_hu,
            "fat_muscle_threshold_hu": (fat_hu + muscle_hu) / 2.0}


def _in_plane_axes(volume: Volume) -> tuple[np.ndarray, int, int]:
    """Pixel spacing (j, i) mm, the in-plane axis running antero-posteriorly (0 = j, 1 = i),
    and +1 if its index grows posteriorly (RAS -y)."""
    direction = volume.direction_ras
    if abs(direction[2, 2]) < 0.9:
        raise TissueError("Tissue analysis needs axial slices (the slice axis along the body "
                          "axis); reformat the scan to axial first.")
    spacing = volume.spacing_mm
    posterior_axis = 0 if abs(direction[1, 1]) >= abs(direction[1, 0]) else 1
    y_component = direction[1, 1] if posterior_axis == 0 else direction[1, 0]
    return np.array([spacing[1], spacing[0]]), posterior_axis, -int(np.sign(y_component))


def _class_stats(weight: np.ndarray, voxel_cm3: float, slab_cm: float, density_g_cm3=None,
                 bmd_mg_cm3=None) -> dict:
    """Mass (g), mean area per slice (cm2) and volume (cm3) of a class given as a boolean or
    fractional (0-1) voxel weight."""
    volume_cm3 = float(weight.sum(dtype=np.float64) * voxel_cm3)
    if bmd_mg_cm3 is not None:
        mass_g = float((bmd_mg_cm3 * weight).sum(dtype=np.float64) * voxel_cm3 / 1000.0)
    else:
        mass_g = volume_cm3 * density_g_cm3
    return {"mass_g": mass_g, "area_cm2": volume_cm3 / slab_cm, "volume_cm3": volume_cm3}


def _mineral_stats(mineral_mg_cm3: np.ndarray, weight: np.ndarray, voxel_cm3: float,
                   slab_cm: float) -> dict:
    """Mass (g) of a mineral map (mg/cm3 per voxel), area and volume of its voxel weight."""
    volume_cm3 = float(weight.sum(dtype=np.float64) * voxel_cm3)
    mass_g = float(mineral_mg_cm3.sum(dtype=np.float64) * voxel_cm3 / 1000.0)
    return {"mass_g": mass_g, "area_cm2": volume_cm3 / slab_cm, "volume_cm3": volume_cm3}


def _region(masks: dict, region: np.ndarray, mineral: dict, voxel_cm3: float,
            slab_cm: float) -> dict:
    """The report fields of one region (image or spine)."""
    inside = region & masks["body"]
    fraction = mineral["cancellous_fraction"]
    out = {
        "fat": _class_stats(masks["fat"] * inside, voxel_cm3, slab_cm, FAT_DENSITY_G_CM3),
        "muscle": _class_stats(masks["muscle"] * inside, voxel_cm3, slab_cm, MUSCLE_DENSITY_G_CM3),
        "skin": _class_stats(masks["skin"] * region, voxel_cm3, slab_cm, SKIN_DENSITY_G_CM3),
        "cortical_mineral": _mineral_stats(mineral["cortical"] * inside,
                                           (masks["cortical"] & inside) * (1.0 - fraction),
                                           voxel_cm3, slab_cm),
        "cancellous_mineral": _mineral_stats(mineral["cancellous"] * inside, fraction * inside,
                                             voxel_cm3, slab_cm),
    }

    def density(name):
        v = out[name]["volume_cm3"]
        return 1000.0 * out[name]["mass_g"] / v if v > 0 else None

    bone_volume = out["cortical_mineral"]["volume_cm3"] + out["cancellous_mineral"]["volume_cm3"]
    bone_mass = out["cortical_mineral"]["mass_g"] + out["cancellous_mineral"]["mass_g"]
    fat, muscle = out["fat"], out["muscle"]

    def ratio(a, b):
        return a / b if b > 0 else None

    out.update({
        "cortical_bmd_mg_cm3": density("cortical_mineral"),
        "cancellous_bmd_mg_cm3": density("cancellous_mineral"),
        "integral_bmd_mg_cm3": 1000.0 * bone_mass / bone_volume if bone_volume > 0 else None,
        "fat_lean_ratio_volume": ratio(fat["volume_cm3"], muscle["volume_cm3"]),
        "fat_lean_ratio_mass": ratio(fat["mass_g"], muscle["mass_g"]),
        "bone_muscle_ratio_volume": ratio(bone_volume, muscle["volume_cm3"]),
        "bone_muscle_ratio_mass": ratio(bone_mass, muscle["mass_g"]),
    })
    return out


def _weighted_mean(values: np.ndarray, weight: np.ndarray) -> float | None:
    total = float(weight.sum(dtype=np.float64))
    return float((values * weight).sum(dtype=np.float64) / total) if total > 0 else None


def _outside_soft_tissue_share(smooth_hu: np.ndarray, body: np.ndarray) -> float:
    """Soft tissue (fat to lean, in-plane smoothed HU) outside the body outline, as a share of
    that inside."""
    soft = (smooth_hu > AIR_THRESHOLD_HU) & (smooth_hu <= LEAN_UPPER_HU)
    return int((soft & ~body).sum()) / max(int((soft & body).sum()), 1)


def _outline_warnings(shares_by_slice: dict[int, float]) -> list[str]:
    """One warning naming the slices where much soft tissue lies outside the body outline:
    arms or objects left out, or an outline cut short."""
    flagged = sorted(k for k, share in shares_by_slice.items()
                     if share > OUTSIDE_SOFT_TISSUE_SHARE)
    if not flagged:
        return []
    runs, start = [], flagged[0]
    for previous, k in zip(flagged, flagged[1:] + [None], strict=True):
        if k != previous + 1:
            runs.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = k
    low, high = (f"{f(shares_by_slice[k] for k in flagged):.0%}" for f in (min, max))
    return [f"Slice{'s' * (len(flagged) > 1)} {', '.join(runs)} ({len(flagged)} of "
            f"{len(shares_by_slice)}): {low if low == high else low + '-' + high} as much soft tissue "
            "outside the body outline as inside (arms, a second body part, a calibration "
            "phantom under the patient, or an outline cut short); check the tissue label map."]


def _slice_range(n_slices: int, options: TissueOptions) -> tuple[int, int]:
    """The half-open slice range (k0, k1) of ``options.slices`` within the scan."""
    if options.slices == ():
        return 0, n_slices
    k0, k1 = options.slices[0], min(n_slices, options.slices[1] + 1)
    if k1 <= k0:
        raise TissueError(f"The slice range {options.slices[0]}:{options.slices[1]} holds no "
                          f"slice of this {n_slices}-slice scan; give first:last within "
                          f"0:{n_slices - 1}.")
    return k0, k1


def classify_tissues(volume_hu: Volume, calibration, k_range: tuple[int, int],
                     cortical_threshold_mg_cm3: float, skin_thickness_mm: float,
                     muscle_band_mm: float | None = None) -> dict:
    """The slice-by-slice classification of slices ``k_range`` (half-open) of an axial CT.

    Returns a dict: "hu", "smooth" (in-plane smoothed HU) and "bmd" (mg/cm3) of the slices,
    "masks" (body, skin, fat, muscle, cortical, cancellous, cavity and, when
    ``muscle_band_mm`` is given, skeletal_muscle; skin/fat/muscle fractional), "open_cortex"
    (cancellous bone found by ``open_cortex_cancellous``), "pixel_mm", "posterior_axis",
    "posterior_sign" and "warnings" (implausible outlines). No mineral fit.
    """
    k0, k1 = k_range
    pixel_mm, posterior_axis, posterior_sign = _in_plane_axes(volume_hu)
    reference = tissue_reference(calibration)
    hu = volume_hu.array_kji[k0:k1].astype(np.float32)
    k_index = np.arange(k0, k1) if calibration.per_slice else None
    bmd = calibration.hu_to_bmd(hu, k_index=k_index)
    smooth = ndimage.gaussian_filter(hu, (0.0, SMOOTHING_SD_PX, SMOOTHING_SD_PX))
    smooth_bmd = calibration.hu_to_bmd(smooth, k_index=k_index)
    names = ("body", "skin", "fat", "muscle", "cortical", "cancellous", "cavity")
    names += ("skeletal_muscle",) if muscle_band_mm is not None else ()
    masks = {name: np.zeros(hu.shape, np.float32 if name in ("skin", "fat", "muscle") else bool)
             for name in names}
    threshold_hu = reference["fat_muscle_threshold_hu"]
    open_cortex = np.zeros(hu.shape, bool)
    # a scan whose cortex encloses no vertebral body anywhere (thin shells on clinical CT) takes
    # the cancellous bone of every slice from ``open_cortex_cancellous``
    any_enclosed = any(bone_envelope(b >= cortical_threshold_mg_cm3, pixel_mm,
                                     MIN_CANCELLOUS_AREA_MM2).any() for b in bmd)
    outside_shares = {}
    for n in track(range(k1 - k0), "tissue: slices classified"):
        s = smooth[n]
        body = body_outline(hu[n], pixel_mm, posterior_axis, posterior_sign, AIR_THRESHOLD_HU)
        outside_shares[k0 + n] = _outside_soft_tissue_share(s, body)
        depth = outline_depth(hu[n], body, pixel_mm, AIR_THRESHOLD_HU, skin_thickness_mm + 2.0)
        skin, below = layer_fractions(depth, pixel_mm, skin_thickness_mm)
        cortical = body & (bmd[n] >= cortical_threshold_mg_cm3)
        cancellous = bone_envelope(cortical, pixel_mm, MIN_CANCELLOUS_AREA_MM2) & body
        if not any_enclosed:
            cancellous = open_cortex_cancellous(cortical, smooth_bmd[n], pixel_mm,
                                                MIN_CANCELLOUS_AREA_MM2, TRABECULAR_MIN_MG_CM3)
            open_cortex[n] = cancellous
        inner = np.where(body & ~cortical & ~cancellous, below, 0.0)
        fat = inner * ((s > AIR_THRESHOLD_HU) & (s < threshold_hu))
        muscle = inner * ((s >= threshold_hu) & (s <= LEAN_UPPER_HU))
        bone = cortical | cancellous
        skin_layer = skin >= 0.5
        lean = (muscle > 0) & ~bone
        cavity = visceral_cavity(lean & ~skin_layer, ((fat > 0) & ~bone) | skin_layer, body,
                                 pixel_mm)
        found = (body, skin, fat, muscle, cortical, cancellous, cavity)
        if muscle_band_mm is not None:
            found += (skeletal_muscle(lean & ~skin_layer, cavity, bone, cancellous, pixel_mm,
                                      posterior_axis, posterior_sign, muscle_band_mm),)
        for name, mask in zip(names, found, strict=True):
            masks[name][n] = mask
    return {"hu": hu, "smooth": smooth, "bmd": bmd, "masks": masks, "open_cortex": open_cortex,
            "pixel_mm": pixel_mm, "posterior_axis": posterior_axis,
            "posterior_sign": posterior_sign, "warnings": _outline_warnings(outside_shares)}


def _skeletal_muscle_l3(volume_hu: Volume, classes: dict, k_range: tuple[int, int],
                        l3_point_ras_mm, muscle_mask_kji, muscle_band_mm: float) -> dict:
    """Skeletal muscle area (cm2) in the Alberta window on the slice nearest the L3 point."""
    k0, k1 = k_range
    k = int(round(volume_hu.ras_to_ijk_points(l3_point_ras_mm)[0, 2]))
    if not k0 <= k < k1:
        raise TissueError("The L3 point lies outside the analysed slices; widen the slice "
                          "range or move the point into L3.")
    masks, hu = classes["masks"], classes["hu"]
    region = (masks["skeletal_muscle"][k - k0] if muscle_mask_kji is None
              else np.asarray(muscle_mask_kji, bool)[k])
    s = classes["smooth"][k - k0]
    window = (region & (s >= MUSCLE_WINDOW_HU[0]) & (s <= MUSCLE_WINDOW_HU[1])
              ) * (1.0 - masks["skin"][k - k0])
    return {
        "k": k, "area_cm2": float(window.sum() * classes["pixel_mm"].prod() / 100.0),
        "window_hu": list(MUSCLE_WINDOW_HU), "mean_hu": _weighted_mean(hu[k - k0], window),
        "mask": "given muscle mask" if muscle_mask_kji is not None
        else f"lean tissue within {muscle_band_mm:g} mm inside the muscle wall and the lean "
        "structures beside the vertebra (back muscles, psoas); where an organ lies against "
        "the wall it takes a strip of it: give a muscle mask for a reference measurement"}


def _mineral_warnings(masks: dict, trabecular: list[float]) -> list[str]:
    """No cancellous bone found, or an implausible trabecular density."""
    warnings = []
    if masks["cortical"].any() and not trabecular:
        warnings.append("No cancellous bone found: the cortex encloses no vertebral body and none "
                        f"denser than {TRABECULAR_MIN_MG_CM3:g} mg/cm3 lies in its hull "
                        "(disc level, very low density, or no vertebra); cancellous mineral is 0.")
    low, high = TRABECULAR_PLAUSIBLE_MG_CM3
    return warnings + [f"Implausible trabecular density {v:.0f} mg/cm3 (outside {low:g}-"
                       f"{high:g}); check the calibration." for v in trabecular
                       if not low <= v <= high]


def analyze_tissue(volume_hu: Volume, calibration, options: TissueOptions | None = None, *,
                   spine_mask_kji: np.ndarray | None = None, l3_point_ras_mm=None,
                   muscle_mask_kji: np.ndarray | None = None) -> TissueResult:
    """Tissue composition of the slices ``options.slices`` (default all) of an axial CT.

    Args:
        volume_hu: axial CT in HU.
        calibration: a ``boneqct.calibration.Calibration`` (phantom, manual or internal).
        options: slices (first, last, both included), cortical threshold (mg/cm3), skin
            thickness and muscle band (mm); default ``TissueOptions()``.
        spine_mask_kji: the spine region; default the vertebral bone found (cortex and the
            cancellous bone it encloses) dilated in-plane by ``SPINE_MARGIN_MM``.
        l3_point_ras_mm: a point (RAS mm) in L3; its nearest slice gives the skeletal muscle
            area (cm2). None: not reported.
        muscle_mask_kji: skeletal muscle mask (e.g. from a segmentation) for the L3 area;
            default the lean tissue within ``options.muscle_band_mm`` inside the wall and the
            lean structures beside the vertebra (``segmentation.skeletal_muscle``).

    Returns:
        A :class:`TissueResult` (its ``to_dict`` is tissue.json): reference values, extent,
        regions "image" and "spine", fat compartments, the L3 muscle area and warnings
        (implausible outline, no or implausible cancellous bone).

    Raises:
        TissueError: no calibration, non-axial slices, or an empty slice range.
    """
    options = options or TissueOptions()
    if calibration is None:
        raise TissueError("Tissue analysis needs a calibration (its thresholds and mineral "
                          "densities come from it): pass --phantom, --calibration (a file or "
                          "'internal'), or --slope/--intercept.")
    k0, k1 = _slice_range(volume_hu.array_kji.shape[0], options)
    threshold = options.cortical_threshold_mg_cm3
    classes = classify_tissues(volume_hu, calibration, (k0, k1), threshold,
                               options.skin_thickness_mm, options.muscle_band_mm)
    masks, hu, pixel_mm = classes["masks"], classes["hu"], classes["pixel_mm"]
    spacing = volume_hu.spacing_mm
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    slab_cm = (k1 - k0) * spacing[2] / 10.0
    stated_mm = stated_slice_thickness_mm(volume_hu)  # what the mineral model reads over
    mineral = bone_mineral(classes["bmd"], masks["body"], masks["cortical"], spacing,
                           MIN_CANCELLOUS_AREA_MM2, (masks["fat"] > 0) | (masks["muscle"] > 0),
                           slice_thickness_mm=stated_mm,
                           open_cortex_cancellous=classes["open_cortex"])
    if spine_mask_kji is None:
        spine = ndimage.binary_dilation(masks["cortical"] | masks["cancellous"],
                                        np.ones((1, 3, 3), bool),
                                        iterations=max(1, int(round(SPINE_MARGIN_MM / pixel_mm.min()))))
        spine |= mineral["region"]  # the whole integration region of the bone mineral
    else:
        spine = np.asarray(spine_mask_kji, bool)[k0:k1]
    reference = {
        **tissue_reference(calibration),
        "fat_hu_measured": _weighted_mean(hu, masks["fat"]),
        "muscle_hu_measured": _weighted_mean(hu, masks["muscle"]),
        "air_threshold_hu": AIR_THRESHOLD_HU, "muscle_upper_hu": LEAN_UPPER_HU,
        "cortical_threshold_mg_cm3": threshold,
        "cortical_threshold_hu": float(calibration.slope_hu_per_mg_cm3 * threshold
                                       + calibration.intercept_hu),
        "cancellous": "the interior enclosed by cortex, any density",
        "skin_thickness_mm": options.skin_thickness_mm,
        "slice_thickness_mm": stated_mm or float(spacing[2]),
        "slice_thickness_from": ("the slice spacing (the scan states none)" if stated_mm is None
                                 else "given by the user" if volume_hu.metadata.get(
                                     "slice_thickness_given") else "the scan's header"),
        "calibration": {"material": calibration.material, "method": calibration.method,
                        "slope_hu_per_mg_cm3": calibration.slope_hu_per_mg_cm3,
                        "intercept_hu": calibration.intercept_hu},
        "trabecular_bmd_mg_cm3": mineral["trabecular_bmd"]}
    masks["cancellous_fraction"] = mineral["cancellous_fraction"]
    return TissueResult(
        reference=reference,
        extent={"k_first": k0, "k_stop": k1, "n_slices": k1 - k0,
                "slab_thickness_mm": slab_cm * 10.0},
        regions={"image": _region(masks, masks["body"] | (masks["skin"] > 0), mineral,
                                  voxel_cm3, slab_cm),
                 "spine": _region(masks, spine & masks["body"], mineral, voxel_cm3, slab_cm)},
        fat_compartments={
            "subcutaneous_fat": _class_stats(masks["fat"] * ~masks["cavity"], voxel_cm3,
                                             slab_cm, FAT_DENSITY_G_CM3),
            "visceral_fat": _class_stats(masks["fat"] * masks["cavity"], voxel_cm3, slab_cm,
                                         FAT_DENSITY_G_CM3)},
        skeletal_muscle_l3=None if l3_point_ras_mm is None else _skeletal_muscle_l3(
            volume_hu, classes, (k0, k1), l3_point_ras_mm, muscle_mask_kji,
            options.muscle_band_mm),
        warnings=classes["warnings"] + _mineral_warnings(masks, mineral["trabecular_bmd"]),
        options=options, masks_kji=masks)


#: Labels of ``tissue_label_map`` (uint8): value -> tissue class.
TISSUE_LABELS: dict[int, str] = {0: "outside", 1: "skin", 2: "subcutaneous_fat",
                                 3: "visceral_fat", 4: "muscle", 5: "cortical_bone",
                                 6: "cancellous_bone", 7: "other"}


def tissue_label_map(volume: Volume, result: TissueResult) -> Volume:
    """The tissue classes of an ``analyze_tissue`` result on the CT grid (uint8, ``TISSUE_LABELS``).

    Each voxel takes its dominant class: fractional classes (skin, fat, muscle) at >= 0.5;
    cortical bone where the cancellous fraction (the fitted body model's core) is below 0.5;
    "other" for body voxels of no class (air inside, bone-free dense tissue). Slices outside
    the analysed range are 0. The label table is in the metadata ("label_table").
    """
    masks = result.masks_kji
    if masks is None:
        raise TissueError("The tissue classes are not kept in a stored result; analyse the "
                          "scan again to draw them.")
    k0, k1 = result.extent["k_first"], result.extent["k_stop"]
    labels = np.zeros(volume.array_kji.shape, np.uint8)
    out = labels[k0:k1]
    out[masks["body"]] = 7
    out[masks["muscle"] >= 0.5] = 4
    out[(masks["fat"] >= 0.5) & ~masks["cavity"]] = 2
    out[(masks["fat"] >= 0.5) & masks["cavity"]] = 3
    out[masks["cortical"]] = 5
    out[masks["cancellous_fraction"] >= 0.5] = 6
    out[masks["skin"] >= 0.5] = 1
    return Volume(labels, volume.ijk_to_ras.copy(),
                  {"label_table": {str(k): v for k, v in TISSUE_LABELS.items()}})
