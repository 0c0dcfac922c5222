"""Analytic geometry of the digital spine phantom: body, ESP-like vertebrae, rod phantom, table.

All positions are RAS mm (x to the patient's right, y anterior, z superior); the patient lies
supine, so the rod phantom and the table are posterior (low y). Shapes are evaluated pointwise
on coordinate arrays and return integer compartment labels (``LABELS``).

Vertebra design after the European Spine Phantom (Kalender et al. 1995, Med Phys 22:1345;
layout as in US 5,235,628): an elliptic-cylinder centrum with a cortical shell, a neural-arch
band around the spinal canal, wedge-shaped transverse processes and a posterior (spinous)
process. Sizes marked "ALBA" come from the IOR-BIC ALBA QA software's detection settings
(docs/domain.md section 2), the others are placeholders to keep configurable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boneqct.calibration.definitions import PhantomDefinition, load_phantom_definition

AIR, SKIN, FAT, MUSCLE, SOFT_TISSUE, BLOOD, SPINAL_SOFT_TISSUE = 0, 1, 2, 3, 4, 5, 6
TABLE, PHANTOM_BODY, CORTICAL_BONE, POSTERIOR_ELEMENTS = 7, 8, 9, 10
#: Trabecular bone of vertebra n (0 = most superior) has label TRABECULAR_FIRST + n for the
#: first TRABECULAR_FIRST_COUNT vertebrae, TRABECULAR_MORE_FIRST + n - TRABECULAR_FIRST_COUNT
#: beyond (``trabecular_label``: a phantom of more vertebrae keeps the labels of a smaller one).
TRABECULAR_FIRST = 11
TRABECULAR_FIRST_COUNT = 10
TRABECULAR_MORE_FIRST = 200
#: Calibration rod n (in the definition's order) has label ROD_FIRST + n.
ROD_FIRST = 21

#: Vertebral deformities the phantom can carry (``SpinePhantomParams.deformities``): the
#: height lost, as a fraction of the normal body height, where each one is deepest - wedge at
#: the anterior wall (hinged at the posterior wall), biconcave at the body's centre (a dish
#: in both endplates, none at the walls), crush everywhere. Test shapes for the Genant types
#: (Genant 1993, J Bone Miner Res 8:1137), not measured fractures.
DEFORMITY_REDUCTIONS: dict[str, float] = {"wedge": 0.32, "biconcave": 0.45, "crush": 0.30}

#: Phantom body beyond the centres of the end rods (mm; placeholder).
PHANTOM_END_MARGIN_MM = 30.0

#: Sacrum and ribs (``SpinePhantomParams.sacrum``, ``ribs``): labels beyond any rod's, in the
#: label table only when present. Shapes are simple test geometry (placeholders), not measured
#: anatomy: alae reach SACRAL_ALA_REACH_MM from the midline, iliac wings are plates
#: ILIAC_WING_THICKNESS_MM thick rising ILIAC_CREST_RISE_MM above S1's centre; ribs are bars of
#: RIB_HALF_SIZE_MM half-size reaching RIB_REACH_MM from the midline, dropping RIB_SLOPE mm per mm.
SACRAL_ALA, ILIAC_WING, RIB = 240, 241, 242
SACRAL_ALA_REACH_MM = 95.0
ILIAC_WING_THICKNESS_MM = 10.0
ILIAC_CREST_RISE_MM = 45.0
RIB_REACH_MM = 110.0
RIB_HALF_SIZE_MM = 4.0
RIB_SLOPE = 0.3
EXTRA_LABELS: dict[int, str] = {SACRAL_ALA: "sacral_ala", ILIAC_WING: "iliac_wing", RIB: "rib"}
#: Most vertebrae (sacrum included) a phantom can hold: as many as there are trabecular labels.
MAX_VERTEBRAE = TRABECULAR_FIRST_COUNT + SACRAL_ALA - TRABECULAR_MORE_FIRST

#: Vertebral body (width, depth, height) in mm by level, for ``anatomical_spine_params``: upper
#: endplate width and depth and posterior body height, growing caudally. After Panjabi 1991
#: (Spine 16:888, thoracic) and Panjabi 1992 (Spine 17:299, lumbar); unverified: means as
#: recalled and rounded, the papers' tables were not read here.
VERTEBRAL_BODY_MM: dict[str, tuple[float, float, float]] = {
    "T4": (27.0, 19.0, 17.0), "T5": (28.0, 21.0, 17.5), "T6": (29.5, 23.0, 18.0),
    "T7": (31.0, 24.5, 18.5), "T8": (32.5, 26.0, 19.0), "T9": (34.0, 27.0, 19.5),
    "T10": (36.0, 28.5, 20.5), "T11": (38.5, 30.0, 21.5), "T12": (40.5, 31.5, 23.0),
    "L1": (42.0, 33.0, 25.0), "L2": (44.0, 34.0, 26.0), "L3": (46.0, 35.0, 26.5),
    "L4": (48.0, 35.5, 26.5), "L5": (50.0, 35.5, 26.0),
}
#: Intervertebral disc heights (mm) of ``anatomical_spine_params``: above a thoracic level and
#: above a lumbar one (placeholders: adult thoracic discs are thinner than lumbar ones, 8-12 mm).
THORACIC_DISC_MM = 5.0
LUMBAR_DISC_MM = 9.0

#: Label value -> compartment name of the phantom's label map (uint8).
LABELS: dict[int, str] = {
    AIR: "air",
    SKIN: "skin",
    FAT: "fat",
    MUSCLE: "muscle",
    SOFT_TISSUE: "soft_tissue",
    BLOOD: "blood",
    SPINAL_SOFT_TISSUE: "spinal_soft_tissue",
    TABLE: "table",
    PHANTOM_BODY: "phantom_body",
    CORTICAL_BONE: "cortical_bone",
    POSTERIOR_ELEMENTS: "posterior_elements",
}
LABEL_DESCRIPTIONS: dict[str, str] = {
    "air": "air around the patient",
    "skin": "skin layer of the body outline",
    "fat": "subcutaneous fat",
    "muscle": "abdominal-wall and paraspinal muscles",
    "soft_tissue": "visceral soft tissue inside the muscle wall",
    "blood": "blood in the aorta",
    "spinal_soft_tissue": "intervertebral discs and spinal canal",
    "table": "patient table",
    "phantom_body": "water-equivalent body of the calibration phantom",
    "cortical_bone": "cortical shell of the vertebral bodies",
    "posterior_elements": "neural arch, transverse and spinous processes",
    "trabecular_<level>": f"trabecular bone of one vertebral body (labels {TRABECULAR_FIRST}+)",
    "rod_<name>": f"calibration rod (labels {ROD_FIRST}+, in the certificate's order)",
}


@dataclass(frozen=True)
class SpinePhantomParams:
    """Anatomy and pose of the digital spine phantom.

    Lengths in mm; mineral densities in mg/cm3 of the calibration phantom's material (K2HPO4
    for Mindways, hydroxyapatite for the HA phantoms), so the truth calibration and the bone
    densities share one unit.

    Attributes:
        levels: vertebra names, superior first.
        trabecular_bmd_mg_cm3: trabecular density per level (ESP: 50/100/200, Kalender 1995).
        vertebra_spacing_mm: distance between vertebra centres along the spine axis (ALBA: 29),
            or one distance per pair of neighbouring levels (superior first).
        body_width_mm: left-right diameter of the centrum (ALBA: about 35).
        body_depth_mm: anterior-posterior diameter of the centrum (placeholder: cylindrical).
        body_height_mm: centrum height along the spine axis (placeholder; not published).
            Each of the three is one value for every level or one per level
            (``anatomical_spine_params``: sizes by level from ``VERTEBRAL_BODY_MM``).
        cortical_thickness_mm: cortical shell thickness per level, or one value for all
            (placeholder: the ESP's cortical structures differ in thickness by level, Kalender
            1995; the values are not published).
        cortical_bmd_mg_cm3: cortical shell density (ALBA expects 800 mg HA/cm3).
        posterior_bmd_mg_cm3: posterior elements' density (ALBA: spinous process 400).
        canal_radius_mm, arch_thickness_mm: spinal canal radius and neural-arch band thickness
            (ALBA's posterior cortical ring of radius 9.3-11.3 mm).
        transverse_width_mm: width across the transverse processes (ALBA: about 62).
        transverse_base_mm, transverse_tip_mm: antero-posterior thickness of the wedge-shaped
            transverse processes at the midline and at the tips (placeholders).
        spinous_length_mm, spinous_width_mm: posterior process size (placeholders).
        posterior_height_mm: height of the posterior elements along the axis (placeholder).
        spine_depth_mm: distance from the skin of the back to the L2-level centrum centre.
        spine_tilt_deg: rotation of the spine about the left-right axis through the middle
            vertebra; positive tilts the superior end anteriorly (lordosis-like).
        spine_rotation_deg: axial rotation about the spine's own axis; positive turns the
            patient's right side anteriorly (right-handed about superior).
        body_outline_width_mm, body_outline_depth_mm: elliptic body outline (mm).
        skin_thickness_mm, fat_thickness_mm, muscle_wall_thickness_mm: outline layers.
        aorta_radius_mm: radius of the aorta (anterior-left of the centrum).
        phantom_present: include the rod phantom under the back.
        phantom_name: calibration phantom definition (``load_phantom_definition``): any
            bundled name or certificate file; its rods are rendered in a row with the
            definition's densities and nominal diameter.
        phantom_gap_mm: air gap between the back and the top of the phantom (or of the table
            without a phantom); the table lies under the phantom, so both move down with it.
        phantom_offset_mm: (x, y) shift of the rod phantom in RAS mm (+x patient's right,
            +y anterior) from its place centred under the back, the table staying put: +y
            presses it into the back, -y into the table.
        phantom_rotation_deg: in-plane rotation of the rod phantom about its centre
            (right-handed about superior).
        rod_spacing_mm: centre-to-centre distance of neighbouring rods.
        rod_diameter_mm: rod diameter; None uses the definition's nominal diameter.
        phantom_width_mm, phantom_thickness_mm, phantom_corner_radius_mm: rounded-rectangle
            phantom body; the width None is the rod row plus ``PHANTOM_END_MARGIN_MM`` at
            each end (200 mm for five rods 35 mm apart).
        table_thickness_mm, table_width_mm: patient table slab under the phantom.
        table_radius_mm: radius of curvature of the table top; None for a flat table.
        deformities: (level, kind) pairs, kind one of ``DEFORMITY_REDUCTIONS``: that
            vertebral body is deformed (its endplates move towards its centre, the cortical
            shell following them); none by default.
        sacrum: add a first sacral body ("S1", trabecular density ``sacrum_bmd_mg_cm3``) one
            vertebra spacing below the last level, fused to sacral alae that reach out to
            iliac wings (``SACRAL_ALA_REACH_MM``, ``ILIAC_WING``); the anatomical anchor of
            level naming (``boneqct.spine.detect``). Off by default.
        ribs: levels carrying a pair of ribs (``RIB``): bars from the transverse processes
            out to the side, sloping down (the lowest one names T12). None by default.
    """

    levels: tuple[str, ...] = ("L1", "L2", "L3")
    trabecular_bmd_mg_cm3: tuple[float, ...] = (50.0, 100.0, 200.0)
    vertebra_spacing_mm: float | tuple[float, ...] = 29.0
    body_width_mm: float | tuple[float, ...] = 35.0
    body_depth_mm: float | tuple[float, ...] = 35.0
    body_height_mm: float | tuple[float, ...] = 25.0
    cortical_thickness_mm: tuple[float, ...] = (1.0, 1.5, 2.0)
    cortical_bmd_mg_cm3: float = 800.0
    posterior_bmd_mg_cm3: float = 400.0
    canal_radius_mm: float = 9.3
    arch_thickness_mm: float = 2.0
    transverse_width_mm: float = 62.0
    transverse_base_mm: float = 10.0
    transverse_tip_mm: float = 4.0
    spinous_length_mm: float = 20.0
    spinous_width_mm: float = 6.0
    posterior_height_mm: float = 15.0
    spine_depth_mm: float = 75.0
    spine_tilt_deg: float = 0.0
    spine_rotation_deg: float = 0.0
    body_outline_width_mm: float = 300.0
    body_outline_depth_mm: float = 200.0
    skin_thickness_mm: float = 2.0
    fat_thickness_mm: float = 20.0
    muscle_wall_thickness_mm: float = 12.0
    aorta_radius_mm: float = 11.0
    phantom_present: bool = True
    phantom_name: str = "mindways-model3"
    phantom_gap_mm: float = 0.0
    phantom_offset_mm: tuple[float, float] = (0.0, 0.0)
    phantom_rotation_deg: float = 0.0
    rod_spacing_mm: float = 35.0
    rod_diameter_mm: float | None = None
    phantom_width_mm: float | None = None
    phantom_thickness_mm: float = 32.0
    phantom_corner_radius_mm: float = 8.0
    table_thickness_mm: float = 15.0
    table_width_mm: float = 420.0
    table_radius_mm: float | None = 800.0
    deformities: tuple[tuple[str, str], ...] = ()
    sacrum: bool = False
    sacrum_bmd_mg_cm3: float = 150.0
    ribs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.levels)
        for level, kind in self.deformities:
            if level not in self.levels or kind not in DEFORMITY_REDUCTIONS:
                raise ValueError(f"deformity ({level}, {kind}): the level must be one of "
                                 f"{self.levels} and the kind one of {sorted(DEFORMITY_REDUCTIONS)}")
        if np.ndim(self.cortical_thickness_mm) == 0:  # one thickness for every level
            object.__setattr__(self, "cortical_thickness_mm",
                               (float(self.cortical_thickness_mm),) * n)
        if len(self.trabecular_bmd_mg_cm3) != n or len(self.cortical_thickness_mm) != n:
            raise ValueError("levels, trabecular_bmd_mg_cm3 and cortical_thickness_mm differ in length")
        if any(level not in self.levels for level in self.ribs):
            raise ValueError(f"ribs {self.ribs}: each level must be one of {self.levels}")
        if n + int(self.sacrum) > MAX_VERTEBRAE:
            raise ValueError(f"at most {MAX_VERTEBRAE} vertebrae")
        for name, count in (("body_width_mm", n), ("body_depth_mm", n), ("body_height_mm", n),
                            ("vertebra_spacing_mm", n - 1)):
            if np.ndim(getattr(self, name)) and len(getattr(self, name)) != count:
                raise ValueError(f"{name}: one value, or {count} (one per level"
                                 f"{' pair' if name == 'vertebra_spacing_mm' else ''})")
        sizes = [self.body_size_mm(index) for index in range(n)]
        if any(max(t * 2 for t in self.cortical_thickness_mm) >= min(size) for size in sizes):
            raise ValueError("the cortical shell leaves no trabecular bone")

    def body_size_mm(self, index: int) -> tuple[float, float, float]:
        """(width, depth, height) of the body of level ``index`` (mm)."""
        return tuple(float(value if np.ndim(value) == 0 else value[index]) for value in (
            self.body_width_mm, self.body_depth_mm, self.body_height_mm))

    @property
    def uniform_bodies(self) -> bool:
        """Whether every level has the same body size (one value each)."""
        return all(np.ndim(v) == 0 for v in (self.body_width_mm, self.body_depth_mm,
                                              self.body_height_mm))


def anatomical_spine_params(levels: tuple[str, ...], **params) -> SpinePhantomParams:
    """Phantom parameters with each level's body size from ``VERTEBRAL_BODY_MM`` (smaller
    thoracic bodies) and its neighbours one disc away (``THORACIC_DISC_MM`` above a thoracic
    level, ``LUMBAR_DISC_MM`` above a lumbar one); ``params`` sets the other fields (the
    densities and cortical thicknesses default to 100 mg/cm3 and 1 mm per level)."""
    unknown = [level for level in levels if level not in VERTEBRAL_BODY_MM]
    if unknown:
        raise ValueError(f"no body size for {unknown}: levels are {', '.join(VERTEBRAL_BODY_MM)}")
    width, depth, height = zip(*(VERTEBRAL_BODY_MM[level] for level in levels), strict=True)
    spacing = tuple((upper + lower) / 2.0 + (LUMBAR_DISC_MM if below.startswith("L")
                                             else THORACIC_DISC_MM)
                    for upper, lower, below in zip(height, height[1:], levels[1:], strict=False))
    defaults = {"trabecular_bmd_mg_cm3": (100.0,) * len(levels),
                "cortical_thickness_mm": (1.0,) * len(levels)}
    return SpinePhantomParams(**{**defaults, **params, "levels": tuple(levels),
                                 "body_width_mm": width, "body_depth_mm": depth,
                                 "body_height_mm": height, "vertebra_spacing_mm": spacing})


def trabecular_label(index: int) -> int:
    """Label of the trabecular bone of vertebra ``index`` (0 = most superior)."""
    if index < TRABECULAR_FIRST_COUNT:
        return TRABECULAR_FIRST + index
    return TRABECULAR_MORE_FIRST + index - TRABECULAR_FIRST_COUNT


def _rotation_z(angle_deg: float) -> np.ndarray:
    """Right-handed rotation about RAS +z (superior)."""
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation_x(angle_deg: float) -> np.ndarray:
    """Right-handed rotation about RAS +x (patient's right)."""
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _inside_ellipse(x, y, center_x, center_y, semi_x, semi_y):
    """Points inside an axis-aligned ellipse."""
    return ((x - center_x) / semi_x) ** 2 + ((y - center_y) / semi_y) ** 2 <= 1.0


def _inside_rounded_rectangle(u, v, half_u, half_v, corner_radius):
    """Points inside a rectangle |u|<=half_u, |v|<=half_v with rounded corners (local frame)."""
    du = np.maximum(np.abs(u) - (half_u - corner_radius), 0.0)
    dv = np.maximum(np.abs(v) - (half_v - corner_radius), 0.0)
    return (np.abs(u) <= half_u) & (np.abs(v) <= half_v) & (du**2 + dv**2 <= corner_radius**2)


@dataclass(frozen=True)
class Rod:
    """One calibration rod as placed in the phantom (RAS mm, densities mg/cm3)."""

    name: str
    label: int
    density_mg_cm3: float
    water_mg_cm3: float | None
    center_xy_ras_mm: tuple[float, float]
    diameter_mm: float


@dataclass(frozen=True)
class Vertebra:
    """One vertebra as placed (RAS mm; axis and frame are unit vectors in RAS)."""

    level: str
    label: int
    trabecular_bmd_mg_cm3: float
    cortical_thickness_mm: float
    center_ras_mm: np.ndarray
    axial_offset_mm: float
    #: body width (left-right), depth (antero-posterior) and height (along the axis), mm
    width_mm: float
    depth_mm: float
    height_mm: float
    deformity: str | None = None


class Anatomy:
    """The placed geometry of one phantom: evaluates compartment labels at RAS points."""

    def __init__(self, params: SpinePhantomParams):
        self.params = params
        p = params
        self.back_y_ras_mm = -p.body_outline_depth_mm / 2.0
        self.definition: PhantomDefinition = load_phantom_definition(p.phantom_name)
        self.rod_diameter_mm = p.rod_diameter_mm or self.definition.nominal_rod_diameter_mm
        self.phantom_width_mm = p.phantom_width_mm or (
            (len(self.definition.rods) - 1) * p.rod_spacing_mm + 2.0 * PHANTOM_END_MARGIN_MM)
        support_y = self.back_y_ras_mm - p.phantom_gap_mm     # top of phantom or table
        nominal_phantom_y = support_y - p.phantom_thickness_mm / 2.0
        self.phantom_center_xy_ras_mm = (p.phantom_offset_mm[0],
                                         nominal_phantom_y + p.phantom_offset_mm[1])
        self.table_top_y_ras_mm = support_y - (
            p.phantom_thickness_mm if p.phantom_present else 0.0)
        # spine frame: columns are the local right, anterior and superior axes in RAS
        self.spine_frame_ras = _rotation_x(-p.spine_tilt_deg) @ _rotation_z(p.spine_rotation_deg)
        self.spine_center_ras_mm = np.array([0.0, self.back_y_ras_mm + p.spine_depth_mm, 0.0])
        sizes = np.array([p.body_size_mm(index) for index in range(len(p.levels))])
        #: the largest body width, depth and height (mm): the reach of the spine's column
        self.largest_body_mm = sizes.max(axis=0)
        self.canal_center_v_mm = -(self.largest_body_mm[1] / 2.0 + p.canal_radius_mm)
        self.rods = self._place_rods() if p.phantom_present else ()
        self.vertebrae = self._place_vertebrae()

    # ----- placement -------------------------------------------------------------------------
    def _place_rods(self) -> tuple[Rod, ...]:
        """Rods in a row along the phantom's long axis, the first at the patient's right."""
        p = self.params
        rods = self.definition.rods
        cx, cy = self.phantom_center_xy_ras_mm
        rotation = _rotation_z(p.phantom_rotation_deg)[:2, :2]
        placed = []
        for n, rod in enumerate(rods):
            u_mm = ((len(rods) - 1) / 2.0 - n) * p.rod_spacing_mm
            x, y = rotation @ np.array([u_mm, 0.0]) + (cx, cy)
            placed.append(Rod(rod.name, ROD_FIRST + n, rod.density_mg_cm3, rod.water_mg_cm3,
                              (float(x), float(y)), self.rod_diameter_mm))
        return tuple(placed)

    def _axial_offsets_mm(self) -> list[float]:
        """Each level's centre along the spine axis (mm from the spine's centre, superior
        positive), the first and last level equally far from it; the sacrum's (one spacing
        below the last level, the last pair's spacing when they differ) last when present."""
        p = self.params
        n = len(p.levels)
        if np.ndim(p.vertebra_spacing_mm) == 0:
            return [((n - 1) / 2.0 - index) * p.vertebra_spacing_mm for index in range(n + 1)]
        below_first = np.concatenate([[0.0], np.cumsum(p.vertebra_spacing_mm)])
        sacrum_gap_mm = (p.vertebra_spacing_mm or (SpinePhantomParams.vertebra_spacing_mm,))[-1]
        below_first = np.append(below_first, below_first[-1] + sacrum_gap_mm)
        return [float(below_first[n - 1] / 2.0 - b) for b in below_first]

    def _place_vertebrae(self) -> tuple[Vertebra, ...]:
        """Vertebrae along the spine axis, the first (superior) one highest."""
        p = self.params
        n = len(p.levels)
        deformities = dict(p.deformities)
        offsets_mm = self._axial_offsets_mm()
        vertebrae = []
        for index, level in enumerate(p.levels):
            w_mm = offsets_mm[index]
            center = self.spine_center_ras_mm + self.spine_frame_ras[:, 2] * w_mm
            vertebrae.append(Vertebra(level, trabecular_label(index),
                                      float(p.trabecular_bmd_mg_cm3[index]),
                                      float(p.cortical_thickness_mm[index]), center, w_mm,
                                      *p.body_size_mm(index), deformities.get(level)))
        if p.sacrum:
            w_mm = offsets_mm[n]
            vertebrae.append(Vertebra("S1", trabecular_label(n), float(p.sacrum_bmd_mg_cm3),
                                      float(p.cortical_thickness_mm[-1]),
                                      self.spine_center_ras_mm + self.spine_frame_ras[:, 2] * w_mm,
                                      w_mm, *p.body_size_mm(n - 1)))
        return tuple(vertebrae)

    @property
    def spine_axis_ras(self) -> np.ndarray:
        """Unit vector of the spine (and every centrum) axis, towards superior, in RAS."""
        return self.spine_frame_ras[:, 2].copy()

    @property
    def labels(self) -> dict[int, str]:
        """Label value -> compartment name for this phantom (with its levels and rods)."""
        table = dict(LABELS)
        table.update({v.label: f"trabecular_{v.level}" for v in self.vertebrae})
        table.update({r.label: f"rod_{r.name}" for r in self.rods})
        if self.params.sacrum:
            table.update({SACRAL_ALA: EXTRA_LABELS[SACRAL_ALA], ILIAC_WING: EXTRA_LABELS[ILIAC_WING]})
        if self.params.ribs:
            table[RIB] = EXTRA_LABELS[RIB]
        return table

    def vertebra_bounding_radius_mm(self) -> float:
        """Radius (mm) of a sphere about a vertebra's centre that contains the whole vertebra."""
        p = self.params
        tip_v_mm = abs(self.canal_center_v_mm) + p.canal_radius_mm + p.arch_thickness_mm
        in_plane_mm = max(
            np.hypot(p.transverse_width_mm / 2.0,
                     abs(self.canal_center_v_mm) + p.transverse_base_mm / 2.0),
            np.hypot(p.spinous_width_mm / 2.0, tip_v_mm + p.spinous_length_mm),
            max(self.largest_body_mm[:2]) / 2.0,
        )
        if p.sacrum:
            in_plane_mm = max(in_plane_mm, np.hypot(SACRAL_ALA_REACH_MM + ILIAC_WING_THICKNESS_MM,
                                                    self.largest_body_mm[1]))
        if p.ribs:
            in_plane_mm = max(in_plane_mm, np.hypot(RIB_REACH_MM, abs(self.canal_center_v_mm)))
        height_mm = max(self.largest_body_mm[2], p.posterior_height_mm) / 2.0
        if p.sacrum:
            height_mm = max(height_mm, ILIAC_CREST_RISE_MM)
        if p.ribs:
            height_mm = max(height_mm, RIB_SLOPE * RIB_REACH_MM + RIB_HALF_SIZE_MM)
        return float(np.hypot(in_plane_mm, height_mm))

    def spine_bounds_xy_ras_mm(self, z_min_mm: float, z_max_mm: float) -> np.ndarray:
        """[[x_min, x_max], [y_min, y_max]] (RAS mm) holding the spine between two z levels."""
        radius = self.vertebra_bounding_radius_mm()
        centers = [v.center_ras_mm[:2] for v in self.vertebrae]
        lows = [c - radius for c in centers]
        highs = [c + radius for c in centers]
        column_radius_mm = max(self.largest_body_mm[:2]) / 2.0
        column_radius_mm /= abs(self.spine_frame_ras[2, 2])
        axis = self.spine_axis_ras
        for z_mm in (z_min_mm, z_max_mm):
            point = self.spine_center_ras_mm + axis * (z_mm - self.spine_center_ras_mm[2]) / axis[2]
            lows.append(point[:2] - column_radius_mm)
            highs.append(point[:2] + column_radius_mm)
        return np.array([np.min(lows, axis=0), np.max(highs, axis=0)]).T

    # ----- z-invariant compartments ----------------------------------------------------------
    def background_labels(self, x_ras_mm: np.ndarray, y_ras_mm: np.ndarray) -> np.ndarray:
        """Labels of the z-invariant compartments (body, table, rod phantom) at (x, y) RAS mm."""
        p = self.params
        x, y = np.broadcast_arrays(x_ras_mm, y_ras_mm)
        labels = np.full(x.shape, AIR, dtype=np.uint8)
        half_w, half_d = p.body_outline_width_mm / 2.0, p.body_outline_depth_mm / 2.0
        self._paint_table(labels, x, y)
        depth_mm = 0.0
        for label, thickness in ((SKIN, 0.0), (FAT, p.skin_thickness_mm),
                                 (MUSCLE, p.fat_thickness_mm),
                                 (SOFT_TISSUE, p.muscle_wall_thickness_mm)):
            depth_mm += thickness
            labels[_inside_ellipse(x, y, 0.0, 0.0, half_w - depth_mm, half_d - depth_mm)] = label
        # paraspinal muscles either side of the spinous process (placeholder sizes)
        spine_y = self.spine_center_ras_mm[1]
        paraspinal_y = spine_y - self.largest_body_mm[1] / 2.0 - 2.0 * p.canal_radius_mm
        for side in (-1.0, 1.0):
            labels[_inside_ellipse(x, y, side * 30.0, paraspinal_y, 24.0, 20.0)] = MUSCLE
        aorta_x = -(p.aorta_radius_mm + 6.0)  # slightly to the patient's left (RAS -x)
        aorta_y = spine_y + self.largest_body_mm[1] / 2.0 + p.aorta_radius_mm + 2.0
        labels[_inside_ellipse(x, y, aorta_x, aorta_y, p.aorta_radius_mm, p.aorta_radius_mm)] = BLOOD
        if p.phantom_present:
            self._paint_rod_phantom(labels, x, y)
        return labels

    def _paint_table(self, labels: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """A slab under the phantom, its top flat or curved up to the sides."""
        p = self.params
        top_y = np.full(x.shape, self.table_top_y_ras_mm)
        if p.table_radius_mm is not None:
            half_chord = np.minimum(np.abs(x), p.table_radius_mm)
            top_y = top_y + p.table_radius_mm - np.sqrt(p.table_radius_mm**2 - half_chord**2)
        inside = (np.abs(x) <= p.table_width_mm / 2.0) & (y <= top_y) & (
            y >= top_y - p.table_thickness_mm)
        labels[inside] = TABLE

    def _paint_rod_phantom(self, labels: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """The rounded-rectangle phantom body and its rods."""
        p = self.params
        cx, cy = self.phantom_center_xy_ras_mm
        c, s = np.cos(np.radians(p.phantom_rotation_deg)), np.sin(np.radians(p.phantom_rotation_deg))
        u = c * (x - cx) + s * (y - cy)
        v = -s * (x - cx) + c * (y - cy)
        labels[_inside_rounded_rectangle(u, v, self.phantom_width_mm / 2.0,
                                         p.phantom_thickness_mm / 2.0,
                                         p.phantom_corner_radius_mm)] = PHANTOM_BODY
        for rod in self.rods:
            radius = rod.diameter_mm / 2.0
            labels[_inside_ellipse(x, y, *rod.center_xy_ras_mm, radius, radius)] = rod.label

    # ----- the spine -------------------------------------------------------------------------
    def spine_labels(self, x_ras_mm, y_ras_mm, z_ras_mm) -> np.ndarray:
        """Spine labels at RAS points (broadcast arrays); 0 where the spine is absent."""
        x, y, z = np.broadcast_arrays(x_ras_mm, y_ras_mm, z_ras_mm)
        dx, dy, dz = (x - self.spine_center_ras_mm[0], y - self.spine_center_ras_mm[1],
                      z - self.spine_center_ras_mm[2])
        frame = self.spine_frame_ras
        u = frame[0, 0] * dx + frame[1, 0] * dy + frame[2, 0] * dz
        v = frame[0, 1] * dx + frame[1, 1] * dy + frame[2, 1] * dz
        w = frame[0, 2] * dx + frame[1, 2] * dy + frame[2, 2] * dz
        semi_u, semi_v = self._column_semi_axes_mm(w)
        in_column = (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0
        labels = np.where(in_column, SPINAL_SOFT_TISSUE, AIR).astype(np.uint8)
        reach_mm = self.vertebra_bounding_radius_mm()
        for vertebra in self.vertebrae:
            w_local = w - vertebra.axial_offset_mm
            if np.min(np.abs(w_local)) > reach_mm:
                continue
            self._paint_vertebra(labels, u, v, w_local, in_column, vertebra)
        return labels

    def canal_center_v_of(self, vertebra: Vertebra) -> float:
        """Antero-posterior position (mm, local frame) of a vertebra's spinal canal centre:
        just behind its body."""
        return -(vertebra.depth_mm / 2.0 + self.params.canal_radius_mm)

    def _column_semi_axes_mm(self, w_mm):
        """Semi-axes (mm, left-right and antero-posterior) of the spine's column (bodies and
        discs) at axial positions ``w_mm``: one body's, or between levels of different sizes
        interpolated along the axis from one body's centre to the next."""
        if self.params.uniform_bodies:
            return self.params.body_width_mm / 2.0, self.params.body_depth_mm / 2.0
        offsets = [v.axial_offset_mm for v in self.vertebrae][::-1]  # increasing
        return tuple(np.interp(w_mm, offsets, [getattr(v, name) / 2.0 for v in self.vertebrae][::-1])
                     .astype(np.result_type(w_mm, np.float32)) for name in ("width_mm", "depth_mm"))

    def _paint_vertebra(self, labels, u, v, w, in_column, vertebra: Vertebra) -> None:
        """Posterior elements, canal, cortical shell and trabecular core in the local frame."""
        p = self.params
        semi_u, semi_v = vertebra.width_mm / 2.0, vertebra.depth_mm / 2.0
        in_post = np.abs(w) <= p.posterior_height_mm / 2.0
        dv = v - self.canal_center_v_of(vertebra)
        r2 = u**2 + dv**2
        arch = r2 <= (p.canal_radius_mm + p.arch_thickness_mm) ** 2
        half_tp = p.transverse_width_mm / 2.0
        wedge_half_mm = (p.transverse_base_mm
                         + (p.transverse_tip_mm - p.transverse_base_mm) * np.abs(u) / half_tp) / 2.0
        transverse = (np.abs(u) <= half_tp) & (np.abs(dv) <= wedge_half_mm)
        spinous = (np.abs(u) <= p.spinous_width_mm / 2.0) & (dv <= 0.0) & (
            dv >= -(p.canal_radius_mm + p.arch_thickness_mm + p.spinous_length_mm))
        labels[in_post & (arch | transverse | spinous)] = POSTERIOR_ELEMENTS
        labels[in_post & (r2 <= p.canal_radius_mm**2)] = SPINAL_SOFT_TISSUE
        if vertebra.level in p.ribs:
            self._paint_ribs(labels, u, dv, w)
        if vertebra.level == "S1" and p.sacrum:
            self._paint_sacral_wings(labels, u, v, w, vertebra)
        t = vertebra.cortical_thickness_mm
        inner_ellipse = (u / (semi_u - t)) ** 2 + (v / (semi_v - t)) ** 2 <= 1.0
        # the column is this body's cross-section when every body has the same size
        in_body = in_column if p.uniform_bodies else (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0
        if vertebra.deformity is None:
            labels[in_body & (np.abs(w) <= vertebra.height_mm / 2.0)] = CORTICAL_BONE
            labels[inner_ellipse & (np.abs(w) <= vertebra.height_mm / 2.0 - t)] = vertebra.label
            return
        sink_mm = self.endplate_sink_mm(vertebra, u, v)
        top_mm, bottom_mm = vertebra.height_mm / 2.0 - sink_mm, -vertebra.height_mm / 2.0 + sink_mm
        labels[in_body & (w <= top_mm) & (w >= bottom_mm)] = CORTICAL_BONE
        labels[inner_ellipse & (w <= top_mm - t) & (w >= bottom_mm + t)] = vertebra.label

    def _paint_ribs(self, labels, u, dv, w) -> None:
        """A rib each side: a bar from the transverse process out to ``RIB_REACH_MM``, at the
        canal's antero-posterior level, its centre dropping ``RIB_SLOPE`` mm per mm outwards."""
        start_mm = self.params.transverse_width_mm / 2.0 - 2.0 * RIB_HALF_SIZE_MM
        out_mm = np.abs(u) - start_mm
        rib = ((out_mm >= 0.0) & (np.abs(u) <= RIB_REACH_MM) & (np.abs(dv) <= RIB_HALF_SIZE_MM)
               & (np.abs(w + RIB_SLOPE * out_mm) <= RIB_HALF_SIZE_MM))
        labels[rib] = RIB

    def _paint_sacral_wings(self, labels, u, v, w, sacrum: Vertebra) -> None:
        """Sacral alae either side of S1's body (its height, its depth) out to the iliac wings:
        plates from the back of the canal to the body's front, rising ``ILIAC_CREST_RISE_MM``
        above S1's centre and reaching as far below."""
        p = self.params
        semi_v = sacrum.depth_mm / 2.0
        ala = ((np.abs(u) <= SACRAL_ALA_REACH_MM) & (np.abs(v) <= semi_v)
               & (np.abs(w) <= sacrum.height_mm / 2.0))
        labels[ala] = SACRAL_ALA
        wing = ((np.abs(u) > SACRAL_ALA_REACH_MM)
                & (np.abs(u) <= SACRAL_ALA_REACH_MM + ILIAC_WING_THICKNESS_MM)
                & (v >= self.canal_center_v_of(sacrum) - p.canal_radius_mm) & (v <= semi_v)
                & (np.abs(w) <= ILIAC_CREST_RISE_MM))
        labels[wing] = ILIAC_WING

    def endplate_sink_mm(self, vertebra: Vertebra, u, v) -> np.ndarray:
        """How far (mm, along the spine axis) each endplate of a vertebral body has moved
        towards the body's centre at local (u, v) mm (u to the right, v anterior, from the
        body's axis): half the height lost there (0 for a normal body)."""
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        if vertebra.deformity is None:
            return np.zeros(u.shape)
        lost = DEFORMITY_REDUCTIONS[vertebra.deformity] * vertebra.height_mm
        semi_u, semi_v = vertebra.width_mm / 2.0, vertebra.depth_mm / 2.0
        if vertebra.deformity == "wedge":  # linear from the posterior to the anterior wall
            share = np.clip((v + semi_v) / (2.0 * semi_v), 0.0, 1.0)
        elif vertebra.deformity == "biconcave":  # a smooth dish, deepest at the centre
            share = np.clip(1.0 - (u / semi_u) ** 2 - (v / semi_v) ** 2, 0.0, 1.0) ** 2
        else:
            share = np.ones(u.shape)
        return lost * share / 2.0

    def body_height_mm(self, level: str, point_ras_mm) -> float:
        """Outer height (mm, endplate surface to endplate surface along the spine axis) of a
        level's body through a RAS point (its position across the axis counts, not along)."""
        vertebra = next(v for v in self.vertebrae if v.level == level)
        offset = np.asarray(point_ras_mm, float) - vertebra.center_ras_mm
        u, v = offset @ self.spine_frame_ras[:, 0], offset @ self.spine_frame_ras[:, 1]
        return float(vertebra.height_mm - 2.0 * self.endplate_sink_mm(vertebra, u, v))
