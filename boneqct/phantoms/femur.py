"""Digital proximal femur with an analytic truth, for hip CTXA.

The femur is a union of simple solids, each a cortical shell of given thickness around a
trabecular (or marrow) core: the head (sphere), the neck (cylinder along the neck axis, from
the head centre to the neck and shaft axes' intersection), the trochanteric region (an
ellipsoid), the lesser trochanter (a sphere) and the shaft (a cylinder running out of the scan
distally). A point inside any solid is trabecular with the density of the first core holding it
(head, neck, trochanter, lesser trochanter, shaft) and cortical otherwise, so the shells between
solids vanish inside the bone. An acetabular shell of the pelvis surrounds the head with a joint
space of ``joint_space_mm``; a soft-tissue body surrounds everything.

The femur is placed in a pose about its head centre (the hip joint): rotation about the shaft
direction (anteversion), about the antero-posterior axis (adduction) and about the left-right
axis (flexion); the acetabulum stays put. Densities are mineral densities (mg/cm3) in the
scanner's calibration material, turned into HU by the scanner model of
``boneqct.phantoms.scanner`` (partial volume by supersampling, slice profile, PSF, noise).

Analytic truth: a cylinder of radius r with a cortical shell of thickness t (density rho_c) and
core density rho_t, seen perpendicular to its axis, has the mean areal density
``(rho_c * pi * (r^2 - (r-t)^2) + rho_t * pi * (r-t)^2) / (2 r)`` across its width (for a
uniform cylinder ``rho * pi * r / 2``), which is the neck's true aBMD.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from boneqct.phantoms import scanner as scanning
from boneqct.phantoms.spine_phantom import PHANTOM_EXAM
from boneqct.volume import Volume

#: HU of a metal implant (CoCr/steel saturates the 12-bit CT scale at 3071 HU).
IMPLANT_HU = 3071.0
#: g/cm2 per (mg/cm3 x mm): 1e-3 g/mg x 0.1 cm/mm.
G_CM2_PER_MG_CM3_MM = 1e-4


@dataclass(frozen=True)
class FemurPhantomParams:
    """Shape, densities and pose of the digital proximal femur (lengths mm, densities mg/cm3).

    Attributes:
        sides: which femurs to render ("left", "right" or both), mirror images of each other.
        head_center_x_mm: |x| (RAS mm) of the head centre from the midline.
        head_center_ras_yz_mm: (y, z) RAS of the head centres.
        head_radius_mm, head_cortex_mm, head_trabecular_mg_cm3: femoral head.
        neck_radius_mm, neck_cortex_mm, neck_trabecular_mg_cm3: cylindrical neck.
        neck_length_mm: head centre to the intersection of the neck and shaft axes.
        neck_shaft_angle_deg: angle between the neck axis and the shaft (typical 125-135).
        trochanter_center_mm: (lateral, anterior, superior) offset of the trochanteric
            ellipsoid's centre from the axes' intersection.
        trochanter_semi_axes_mm: its semi-axes along lateral, anterior, superior.
        trochanter_cortex_mm, trochanter_trabecular_mg_cm3: its shell and core.
        lesser_trochanter_center_mm, lesser_trochanter_radius_mm: medial-posterior knob
            (offset from the intersection, lateral/anterior/superior).
        shaft_radius_mm, shaft_cortex_mm, marrow_mg_cm3: shaft, running out of the scan.
        cortical_mg_cm3: density of every cortical shell.
        anteversion_deg: rotation of the femur about the shaft direction through the head
            centre; positive turns the neck anteriorly (internal rotation is negative).
        adduction_deg: rotation about the antero-posterior axis; positive moves the shaft
            towards the midline.
        flexion_deg: rotation about the left-right axis; positive moves the shaft anteriorly.
        joint_space_mm: gap between the head and the acetabulum.
        acetabulum_thickness_mm, acetabulum_mg_cm3, acetabulum_opening_deg: the socket, a
            spherical shell covering directions within ``acetabulum_opening_deg`` of the
            medial-superior direction.
        pelvis_column_radius_mm, pelvis_column_bottom_mm: a vertical column of pelvic bone
            (the ilium above, the ischium below; density ``acetabulum_mg_cm3``) joined to the
            acetabulum's medial side and rising through the scan's top, from
            ``pelvis_column_bottom_mm`` below the head centre; radius 0: none.
        pelvis_bridge_radius_mm: a horizontal bar of bone (heterotopic ossification) of this
            radius from the lesser trochanter's centre to the pelvis column; 0: none.
        body_semi_axes_mm: (x, y) semi-axes of the elliptic soft-tissue body.
        implant: add a metal stem along the neck and down the shaft (hip prosthesis).
    """

    sides: tuple[str, ...] = ("left",)
    head_center_x_mm: float = 95.0
    head_center_ras_yz_mm: tuple[float, float] = (10.0, 0.0)
    head_radius_mm: float = 22.0
    head_cortex_mm: float = 1.0
    head_trabecular_mg_cm3: float = 300.0
    neck_radius_mm: float = 15.0
    neck_cortex_mm: float = 2.0
    neck_trabecular_mg_cm3: float = 200.0
    neck_length_mm: float = 66.0
    neck_shaft_angle_deg: float = 130.0
    trochanter_center_mm: tuple[float, float, float] = (6.0, 0.0, 2.0)
    trochanter_semi_axes_mm: tuple[float, float, float] = (22.0, 17.0, 30.0)
    trochanter_cortex_mm: float = 1.5
    trochanter_trabecular_mg_cm3: float = 150.0
    lesser_trochanter_center_mm: tuple[float, float, float] = (-12.0, -8.0, -30.0)
    lesser_trochanter_radius_mm: float = 9.0
    shaft_radius_mm: float = 14.0
    shaft_cortex_mm: float = 4.0
    marrow_mg_cm3: float = 0.0
    cortical_mg_cm3: float = 1000.0
    anteversion_deg: float = 0.0
    adduction_deg: float = 0.0
    flexion_deg: float = 0.0
    joint_space_mm: float = 2.5
    acetabulum_thickness_mm: float = 5.0
    acetabulum_mg_cm3: float = 600.0
    acetabulum_opening_deg: float = 80.0
    pelvis_column_radius_mm: float = 0.0
    pelvis_column_bottom_mm: float = 60.0
    pelvis_bridge_radius_mm: float = 0.0
    body_semi_axes_mm: tuple[float, float] = (210.0, 120.0)
    implant: bool = False

    def __post_init__(self) -> None:
        if not self.sides or set(self.sides) - {"left", "right"}:
            raise ValueError("sides must hold 'left' and/or 'right'")

    def neck_abmd_g_cm2(self) -> float:
        """Analytic mean areal density (g/cm2) across the cylindrical neck seen from the front."""
        r, t = self.neck_radius_mm, self.neck_cortex_mm
        mass_per_mm = (self.cortical_mg_cm3 * np.pi * (r**2 - (r - t) ** 2)
                       + self.neck_trabecular_mg_cm3 * np.pi * (r - t) ** 2)
        return float(mass_per_mm / (2.0 * r) * G_CM2_PER_MG_CM3_MM)


def _rotation(axis, angle_deg: float) -> np.ndarray:
    """Right-handed rotation matrix about the unit ``axis`` by ``angle_deg``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _turning(from_vec, to_vec, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` in the plane of two orthogonal vectors, turning ``from_vec``
    towards ``to_vec``."""
    return _rotation(np.cross(from_vec, to_vec), angle_deg)


@dataclass(frozen=True)
class PlacedFemur:
    """One femur as placed: head centre (RAS mm) and its posed lateral/anterior/superior axes."""

    side: str
    head_center_ras_mm: np.ndarray
    axes_ras: np.ndarray  # columns: lateral, anterior, superior (posed)
    medial_superior_ras: np.ndarray  # unposed acetabulum direction

    def truth(self, p: FemurPhantomParams) -> dict:
        """Head, neck and shaft geometry in RAS."""
        lateral, _, superior = self.axes_ras.T
        nsa = np.radians(p.neck_shaft_angle_deg)
        to_head = -np.sin(nsa) * lateral - np.cos(nsa) * superior
        intersection = self.head_center_ras_mm - p.neck_length_mm * to_head
        return {"side": self.side, "head_center_ras_mm": self.head_center_ras_mm.tolist(),
                "head_radius_mm": p.head_radius_mm,
                "neck_axis_ras": (-to_head).tolist(), "shaft_axis_ras": superior.tolist(),
                "axes_intersection_ras_mm": intersection.tolist(),
                "neck_shaft_angle_deg": p.neck_shaft_angle_deg}


def place_femurs(p: FemurPhantomParams) -> list[PlacedFemur]:
    """Head centres and posed axes of the rendered femurs."""
    anterior, superior = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    placed = []
    for side in p.sides:
        lateral = np.array([-1.0 if side == "left" else 1.0, 0.0, 0.0])
        center = np.array([lateral[0] * p.head_center_x_mm, *p.head_center_ras_yz_mm])
        pose = (_turning(-superior, anterior, p.flexion_deg)
                @ _turning(-superior, -lateral, p.adduction_deg)
                @ _turning(-lateral, anterior, p.anteversion_deg))
        axes = pose @ np.column_stack([lateral, anterior, superior])
        placed.append(PlacedFemur(side, center, axes,
                                  (superior - lateral) / np.sqrt(2.0)))
    return placed


def femur_density(p: FemurPhantomParams, femur: PlacedFemur, x, y, z):
    """Mineral density (mg/cm3) at RAS points and masks of femur, acetabulum and implant."""
    dx, dy, dz = np.broadcast_arrays(x - femur.head_center_ras_mm[0],
                                     y - femur.head_center_ras_mm[1],
                                     z - femur.head_center_ras_mm[2])
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    lat, ant, sup = (dx * a[0] + dy * a[1] + dz * a[2] for a in femur.axes_ras.T)
    nsa = np.radians(p.neck_shaft_angle_deg)
    h_l, h_s = -np.sin(nsa), -np.cos(nsa)  # unit vector from the intersection to the head
    p_l, p_s = -p.neck_length_mm * h_l, -p.neck_length_mm * h_s  # the intersection
    t_neck = -(lat * h_l + sup * h_s)
    r2_neck = dist**2 - t_neck**2
    tc = np.add((p_l, 0.0, p_s), p.trochanter_center_mm)
    ta = np.asarray(p.trochanter_semi_axes_mm)
    lc = np.add((p_l, 0.0, p_s), p.lesser_trochanter_center_mm)
    r2_shaft = (lat - p_l) ** 2 + ant**2

    def ellipsoid(semi, shrink):
        return (((lat - tc[0]) / (semi[0] - shrink)) ** 2 + ((ant - tc[1]) / (semi[1] - shrink)) ** 2
                + ((sup - tc[2]) / (semi[2] - shrink)) ** 2) <= 1.0

    lesser_d2 = (lat - lc[0]) ** 2 + (ant - lc[1]) ** 2 + (sup - lc[2]) ** 2
    in_neck_span = (t_neck >= 0) & (t_neck <= p.neck_length_mm)
    in_shaft_span = sup <= tc[2]
    solids = (  # (outer, core, core density)
        (dist <= p.head_radius_mm, dist <= p.head_radius_mm - p.head_cortex_mm,
         p.head_trabecular_mg_cm3),
        (in_neck_span & (r2_neck <= p.neck_radius_mm**2),
         in_neck_span & (r2_neck <= (p.neck_radius_mm - p.neck_cortex_mm) ** 2),
         p.neck_trabecular_mg_cm3),
        (ellipsoid(ta, 0.0), ellipsoid(ta, p.trochanter_cortex_mm), p.trochanter_trabecular_mg_cm3),
        (lesser_d2 <= p.lesser_trochanter_radius_mm**2,
         lesser_d2 <= (p.lesser_trochanter_radius_mm - p.trochanter_cortex_mm) ** 2,
         p.trochanter_trabecular_mg_cm3),
        (in_shaft_span & (r2_shaft <= p.shaft_radius_mm**2),
         in_shaft_span & (r2_shaft <= (p.shaft_radius_mm - p.shaft_cortex_mm) ** 2),
         p.marrow_mg_cm3),
    )
    bone = np.zeros(dist.shape, bool)
    density = np.full(dist.shape, np.nan, np.float32)
    for outer, core, core_density in solids:
        bone |= outer
        density[core & np.isnan(density)] = core_density
    density[bone & np.isnan(density)] = p.cortical_mg_cm3
    inner = p.head_radius_mm + p.joint_space_mm
    cos_open = (dx * femur.medial_superior_ras[0] + dy * femur.medial_superior_ras[1] + dz * femur.medial_superior_ras[2]) / np.maximum(dist, 1e-9)
    acetabulum = ((dist >= inner) & (dist <= inner + p.acetabulum_thickness_mm)
                  & (cos_open >= np.cos(np.radians(p.acetabulum_opening_deg))))
    if p.pelvis_column_radius_mm > 0:  # axis medial to the joint space, touching it at z = 0
        medial = femur.medial_superior_ras * [1.0, 1.0, 0.0]
        medial /= np.linalg.norm(medial)
        offset = inner + p.pelvis_column_radius_mm
        acetabulum = acetabulum | (((dx - offset * medial[0]) ** 2 + (dy - offset * medial[1]) ** 2
                                    <= p.pelvis_column_radius_mm**2)
                                   & (dz >= -p.pelvis_column_bottom_mm))
        if p.pelvis_bridge_radius_mm > 0:
            start = femur.axes_ras @ lc  # the lesser trochanter's centre, from the head centre
            end = np.array([offset * medial[0], offset * medial[1], start[2]])
            acetabulum = acetabulum | (_segment_distance_mm(
                (dx, dy, dz), start, end) <= p.pelvis_bridge_radius_mm)
    implant = np.zeros(dist.shape, bool)
    if p.implant:
        stem_r = 5.0
        implant = ((in_neck_span & (t_neck >= 5.0) & (r2_neck <= stem_r**2))
                   | ((sup <= p_s) & (sup >= p_s - 80.0) & (r2_shaft <= stem_r**2)))
    return np.where(bone, density, 0.0).astype(np.float32), bone, acetabulum, implant


def _segment_distance_mm(points, start, end):
    """Distance (mm) of points given as (x, y, z) arrays from the segment ``start``-``end``."""
    direction = end - start
    t = sum((c - s0) * d for c, s0, d in zip(points, start, direction, strict=True))
    t = np.clip(t / (direction @ direction), 0.0, 1.0)
    return np.sqrt(sum((c - s0 - t * d) ** 2 for c, s0, d in zip(points, start, direction,
                                                                   strict=True)))


def _box(mask_ji: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding (j, i) slices of a 2D mask, or None when it is empty."""
    found = ndimage.find_objects(mask_ji.astype(np.uint8))
    return found[0] if found else None


@dataclass
class FemurPhantom:
    """A rendered hip CT (HU, int16), its femur label map and the analytic truth."""

    volume: Volume
    labels: Volume
    truth: dict


#: Label values of the femur phantom's label map.
FEMUR_LABELS = {0: "background", 1: "femur_left", 2: "femur_right", 3: "acetabulum",
                4: "implant"}


#: The hip phantom's default scan: 0.8 mm pixels, 1 mm slices over 160 mm.
FEMUR_SCANNER = scanning.ScannerParams(pixel_mm=0.8, matrix=(200, 160), n_slices=160,
                              slice_spacing_mm=1.0, slice_thickness_mm=1.0, psf_fwhm_mm=0.8,
                              noise_sd_hu=15.0, supersample=2)


def femur_grid(p: FemurPhantomParams, scanner: scanning.ScannerParams) -> np.ndarray:
    """IJK->RAS of the phantom: axial slices (i to patient left, j posterior, k superior),
    centred in x on the rendered hip(s) and in z around the proximal femur."""
    xs = [f.head_center_ras_mm for f in place_femurs(p)]
    center_x = float(np.mean([c[0] for c in xs])) if scanner.fov_center_ras_mm is None \
        else scanner.fov_center_ras_mm[0]
    center_y = p.head_center_ras_yz_mm[0] if scanner.fov_center_ras_mm is None \
        else scanner.fov_center_ras_mm[1]
    if len(p.sides) == 1 and scanner.fov_center_ras_mm is None:
        center_x += 0.3 * np.sign(center_x) * p.head_center_x_mm  # lateral part of the hip
    ni, nj = scanner.matrix
    m = np.diag([-scanner.pixel_mm, -scanner.pixel_mm, scanner.slice_spacing_mm, 1.0])
    top_z = p.head_center_ras_yz_mm[1] + p.head_radius_mm + 20.0
    m[:3, 3] = (center_x + (ni - 1) / 2.0 * scanner.pixel_mm,
                center_y + (nj - 1) / 2.0 * scanner.pixel_mm,
                top_z - (scanner.n_slices - 1) * scanner.slice_spacing_mm)
    return m


def make_femur_phantom(params: FemurPhantomParams | None = None,
                       scanner: scanning.ScannerParams | None = None, seed: int = 0,
                       top_z_ras_mm: float | None = None) -> FemurPhantom:
    """Render a hip CT with the scanner model; deterministic per seed.

    ``top_z_ras_mm`` moves the scan so its top slice is at that height; the default scan
    starts 20 mm above the head (a scan ending in the trochanter is a truncated femur).
    """
    p = params or FemurPhantomParams()
    scanner = scanner or FEMUR_SCANNER
    calibration = scanning.calibration_for(scanner)
    tissue = scanning.tissue_hu_for(scanner)
    ijk_to_ras = femur_grid(p, scanner)
    if top_z_ras_mm is not None:
        ijk_to_ras[2, 3] = top_z_ras_mm - (scanner.n_slices - 1) * scanner.slice_spacing_mm
    femurs = place_femurs(p)
    ni, nj = scanner.matrix
    nk, ss = scanner.n_slices, scanner.supersample
    sub = scanning.subsample_offsets_mm(ss, 1.0)
    fi = (np.arange(ni)[:, None] + sub).ravel()
    fj = (np.arange(nj)[:, None] + sub).ravel()
    x_fine = ijk_to_ras[0, 3] + ijk_to_ras[0, 0] * fi
    y_fine = ijk_to_ras[1, 3] + ijk_to_ras[1, 1] * fj
    body = ((x_fine[None, :] / p.body_semi_axes_mm[0]) ** 2
            + (y_fine[:, None] / p.body_semi_axes_mm[1]) ** 2) <= 1.0
    background_fine = np.where(body, tissue["muscle"], tissue["air"]).astype(np.float32)
    z_sub = scanning.slice_profile_offsets_mm(scanner)
    z_fine = scanning.dithered_offsets_mm(z_sub, scanner.slice_thickness_mm, ss, (nj * ss, ni * ss))
    rng = np.random.default_rng(seed)
    hu_kji = np.empty((nk, nj, ni), np.int16)
    labels_kji = np.zeros((nk, nj, ni), np.uint8)
    fine_pixel_mm = scanner.pixel_mm / ss
    voxel_cm3 = scanner.pixel_mm**2 * scanner.slice_spacing_mm / 1000.0
    femur_mass_g = dict.fromkeys(p.sides, 0.0)
    x_px = ijk_to_ras[0, 3] + ijk_to_ras[0, 0] * np.arange(ni)
    y_px = ijk_to_ras[1, 3] + ijk_to_ras[1, 1] * np.arange(nj)
    for k in range(nk):
        z = ijk_to_ras[2, 3] + ijk_to_ras[2, 2] * k
        hu_fine = background_fine.copy()
        slab = (z + z_sub[[0, -1]])[:, None, None]
        for femur in femurs:
            coarse = [m.any(axis=0) for m in femur_density(p, femur, x_px[None, None, :],
                                                           y_px[None, :, None], slab)[1:]]
            box = _box(ndimage.binary_dilation(np.logical_or.reduce(coarse), iterations=2))
            if box is None:
                continue
            fine_box = (slice(box[0].start * ss, box[0].stop * ss),
                        slice(box[1].start * ss, box[1].stop * ss))
            density, bone, acetabulum, implant = femur_density(
                p, femur, x_fine[None, None, fine_box[1]], y_fine[None, fine_box[0], None],
                z + z_fine[(slice(None), *fine_box)])
            sub_hu = np.broadcast_to(hu_fine[fine_box], bone.shape)
            sub_hu = np.where(bone, calibration.tissue_hu(density), sub_hu)
            sub_hu = np.where(acetabulum, calibration.tissue_hu(p.acetabulum_mg_cm3), sub_hu)
            hu_fine[fine_box] = np.where(implant, IMPLANT_HU, sub_hu).mean(axis=0)
            femur_mass_g[femur.side] += float(density.sum()) * voxel_cm3 / (ss * ss * len(z_sub)) / 1000.0
            at_centres = (len(z_sub) // 2, slice(ss // 2, None, ss), slice(ss // 2, None, ss))
            for mask, value in ((bone, 1 if femur.side == "left" else 2), (acetabulum, 3),
                                (implant, 4)):
                labels_kji[k][box][mask[at_centres]] = value
        blurred = scanning.apply_psf(hu_fine, fine_pixel_mm, scanner.psf_fwhm_mm)
        pixel = blurred.reshape(nj, ss, ni, ss).mean(axis=(1, 3))
        hu_kji[k] = scanning.to_int16_hu(scanning.add_noise(pixel, scanner.noise_sd_hu, rng))
    truth = {
        "generator": "boneqct.phantoms.femur.make_femur_phantom",
        "seed": seed,
        "femur_params": dataclasses.asdict(p),
        "scanner_params": {**dataclasses.asdict(scanner), "tissue_hu": dict(scanner.tissue_hu)},
        "calibration": calibration.as_dict(),
        "grid": {"ijk_to_ras": ijk_to_ras.tolist(), "size_ijk": [ni, nj, nk]},
        "femurs": [f.truth(p) for f in femurs],
        "neck_abmd_g_cm2": p.neck_abmd_g_cm2(),
        "femur_mineral_in_scan_g": femur_mass_g,
        "label_table": {str(k): v for k, v in FEMUR_LABELS.items()},
    }
    metadata = {**PHANTOM_EXAM, "series_description": "BoneQCT digital hip phantom",
                "patient_id": f"BQCT-HIP-{seed}", "kvp": float(scanner.kvp),
                "slice_thickness_mm": scanner.slice_thickness_mm,
                "pixel_spacing_mm": [scanner.pixel_mm, scanner.pixel_mm], "synthetic": True}
    return FemurPhantom(Volume(hu_kji, ijk_to_ras, metadata),
                        Volume(labels_kji, ijk_to_ras.copy(), {"label_table": truth["label_table"]}),
                        truth)


__all__ = ["FEMUR_LABELS", "FEMUR_SCANNER", "FemurPhantom", "FemurPhantomParams", "femur_density",
           "make_femur_phantom", "place_femurs"]
