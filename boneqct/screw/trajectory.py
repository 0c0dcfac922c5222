"""A planned screw on the CT grid: its line (entry -> tip, RAS mm) and the voxels of its
cylinder, of the shell around it and of its segments along the path, each voxel with the
fraction of its volume inside the region.

Partial-volume weights: a 6.5 mm screw is only five to nine voxels across at 0.7-1.25 mm, so
counting whole voxels by their centres would change the region's volume by tens of percent
with the screw's position and orientation against the grid. Each voxel near the screw is
split into sub-samples, one in each cell of a regular grid at most ``SUBSAMPLE_MM`` apart
along each voxel axis, placed at a fixed random point of its cell (stratified, jittered
sampling: a regular lattice would align with the cylinder's radius for some positions and
bias its volume by 1-2%), and its weight is the fraction of its sub-samples inside the
region: the overlap of the box-shaped voxel with the region. The cylinder's volume so
found is within 0.5% of pi r^2 L whatever the position and orientation on a 1 x 1 x 1.5 mm
grid (Testing/test_screw.py). Means over a region are weighted by it.

The shell's cortical contact is a share of area, not a mean: it is counted on the shell's
sub-samples themselves (``shell_points_ijk``), each given the CT's value interpolated there
(trilinear), so that the cortex's edge is found within the voxel. Thresholding whole voxels
instead moves that edge by about a tenth of a voxel towards the trabecular side and reads an
analytic pedicle's contact 5-12 points high at 0.5-1 mm voxels (measured while building it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boneqct.errors import ScrewError
from boneqct.volume import Volume

#: Largest distance (mm) between the sub-samples of a voxel along each of its axes.
SUBSAMPLE_MM = 0.25
#: Most sub-samples per voxel axis (a 2.5 mm slice gets 8, 0.31 mm apart).
MAX_SUBSAMPLES_PER_AXIS = 8
#: Shortest screw measured (mm): shorter lines are a slip of the mouse, not a plan.
MIN_LENGTH_MM = 1.0
#: Seed of the fixed sub-sample jitter (results are reproducible).
JITTER_SEED = 0
#: Voxels processed at once (bounds the sub-sample arrays to some tens of MB).
CHUNK_VOXELS = 20000


@dataclass(frozen=True)
class ScrewLine:
    """One planned screw: entry and tip points (RAS mm) and its name."""

    name: str
    entry_ras_mm: np.ndarray
    tip_ras_mm: np.ndarray

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.tip_ras_mm - self.entry_ras_mm))

    @property
    def axis_ras(self) -> np.ndarray:
        """Unit vector from entry to tip (RAS)."""
        return (self.tip_ras_mm - self.entry_ras_mm) / self.length_mm


def screw_line(name: str, entry_ras_mm, tip_ras_mm, length_mm: float | None = None) -> ScrewLine:
    """A checked screw line; with ``length_mm`` the tip is moved along entry -> tip to lie that
    far from the entry.

    Raises:
        ScrewError: points not three finite numbers, or entry and tip (nearly) the same.
    """
    points = []
    for what, point in (("entry", entry_ras_mm), ("tip", tip_ras_mm)):
        point = np.asarray(point, dtype=float)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise ScrewError(f"Screw '{name}': the {what} point is not three finite numbers "
                             "(R,A,S mm).")
        points.append(point)
    entry, tip = points
    distance_mm = float(np.linalg.norm(tip - entry))
    if distance_mm < MIN_LENGTH_MM:
        raise ScrewError(f"Screw '{name}' has entry and tip {distance_mm:.2f} mm apart: a screw "
                         f"needs a length of at least {MIN_LENGTH_MM:g} mm. Give distinct entry "
                         "and tip points.")
    if length_mm is not None:
        tip = entry + (tip - entry) / distance_mm * float(length_mm)
    return ScrewLine(str(name), entry, tip)


@dataclass
class ScrewSampling:
    """The voxels of the CT near one screw with their partial-volume weights (0-1).

    Attributes:
        kji: (N, 3) voxel indices inside the image.
        cylinder_weight: (N,) fraction of each voxel inside the screw's cylinder.
        shell_weight: (N,) fraction inside the shell (radius R to R + shell).
        segment_weight: (n_segments, N) fraction inside the cylinder within each segment.
        segment_edges_mm: (n_segments + 1,) distances from the entry (mm) bounding segments.
        voxel_volume_mm3: volume of one voxel.
        outside_fraction: fraction of the cylinder and shell's volume outside the image.
        shell_points_ijk: (M, 3) fractional voxel indices (i, j, k) of the shell's
            sub-samples inside the image.
    """

    kji: np.ndarray
    cylinder_weight: np.ndarray
    shell_weight: np.ndarray
    segment_weight: np.ndarray
    segment_edges_mm: np.ndarray
    voxel_volume_mm3: float
    outside_fraction: float
    shell_points_ijk: np.ndarray


def _subsample_offsets_ijk(spacing_mm: np.ndarray) -> np.ndarray:
    """(M, 3) offsets (voxel units, i j k) of a voxel's sub-samples from its centre: one at
    a fixed random point of each cell of a regular sub-grid."""
    counts = np.clip(np.ceil(spacing_mm / SUBSAMPLE_MM), 1, MAX_SUBSAMPLES_PER_AXIS).astype(int)
    axes = [(np.arange(n) + 0.5) / n - 0.5 for n in counts]
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    jitter = np.random.default_rng(JITTER_SEED).uniform(-0.5, 0.5, cells.shape)
    return cells + jitter / counts


def _candidate_voxels(volume: Volume, line: ScrewLine, outer_mm: float) -> np.ndarray:
    """(N, 3) voxel indices i, j, k (possibly outside the image) whose voxel can touch the
    capsule of radius ``outer_mm`` around the line."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    low = np.minimum(line.entry_ras_mm, line.tip_ras_mm) - outer_mm
    high = np.maximum(line.entry_ras_mm, line.tip_ras_mm) + outer_mm
    ijk = volume.ras_to_ijk_points(low + corners * (high - low))
    first, last = np.floor(ijk.min(axis=0)).astype(int), np.ceil(ijk.max(axis=0)).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(first, last, strict=True)],
                                indexing="ij"), axis=-1).reshape(-1, 3)
    centres = volume.ijk_to_ras_points(grid)
    t = np.clip((centres - line.entry_ras_mm) @ line.axis_ras, 0.0, line.length_mm)
    distance = np.linalg.norm(centres - (line.entry_ras_mm + t[:, None] * line.axis_ras), axis=1)
    half_diagonal_mm = 0.5 * float(np.linalg.norm(volume.spacing_mm))
    return grid[distance <= outer_mm + half_diagonal_mm]


def sample_screw(volume: Volume, line: ScrewLine, diameter_mm: float, shell_mm: float,
                 segment_mm: float) -> ScrewSampling:
    """The voxels of ``volume``'s grid in the screw's cylinder (diameter ``diameter_mm``,
    from entry to tip), in the shell ``shell_mm`` thick around it, and in segments of about
    ``segment_mm`` along it (equal lengths), each with its partial-volume weight."""
    radius_mm = diameter_mm / 2.0
    outer_mm = radius_mm + shell_mm
    n_segments = max(1, int(round(line.length_mm / segment_mm)))
    edges_mm = np.linspace(0.0, line.length_mm, n_segments + 1)
    candidates = _candidate_voxels(volume, line, outer_mm)
    offsets = _subsample_offsets_ijk(volume.spacing_mm)
    matrix, origin = volume.ijk_to_ras[:3, :3], volume.ijk_to_ras[:3, 3]
    cylinder = np.zeros(len(candidates))
    shell = np.zeros(len(candidates))
    segments = np.zeros((n_segments, len(candidates)))
    shell_points = []
    for start in range(0, len(candidates), CHUNK_VOXELS):
        chunk = slice(start, start + CHUNK_VOXELS)
        ijk = candidates[chunk][:, None, :] + offsets[None]
        points = ijk @ matrix.T + origin
        relative = points - line.entry_ras_mm
        t = relative @ line.axis_ras
        r = np.linalg.norm(relative - t[..., None] * line.axis_ras, axis=-1)
        along = (t >= 0.0) & (t <= line.length_mm)
        in_cylinder = along & (r <= radius_mm)
        cylinder[chunk] = in_cylinder.mean(axis=1)
        in_shell = along & (r > radius_mm) & (r <= outer_mm)
        shell[chunk] = in_shell.mean(axis=1)
        shell_points.append(ijk[in_shell])
        which = np.clip(np.searchsorted(edges_mm, t, side="right") - 1, 0, n_segments - 1)
        for n in range(n_segments):
            segments[n, chunk] = (in_cylinder & (which == n)).mean(axis=1)
    size_ijk = np.array(volume.size_ijk)
    inside = np.all((candidates >= 0) & (candidates < size_ijk), axis=1)
    total = cylinder.sum() + shell.sum()
    outside = float((cylinder[~inside].sum() + shell[~inside].sum()) / total) if total else 1.0
    keep = inside & ((cylinder > 0) | (shell > 0))
    shell_points_ijk = np.concatenate(shell_points) if shell_points else np.zeros((0, 3))
    within = np.all((shell_points_ijk > -0.5) & (shell_points_ijk < size_ijk - 0.5), axis=1)
    return ScrewSampling(
        kji=candidates[keep][:, ::-1], cylinder_weight=cylinder[keep], shell_weight=shell[keep],
        segment_weight=segments[:, keep], segment_edges_mm=edges_mm,
        voxel_volume_mm3=float(abs(np.linalg.det(matrix))), outside_fraction=outside,
        shell_points_ijk=shell_points_ijk[within])

