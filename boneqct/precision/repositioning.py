"""The software's own precision: re-run the spine ROI placement from perturbed seeds on one scan.

Each run moves every level's seed point by a random offset drawn uniformly in a ball of radius
``perturbation_mm`` (RAS mm) and runs ``boneqct.spine.pipeline.analyze_spine``; the spread of
the per-level BMD across runs is the share of the precision error that comes from ROI placement
alone (no repositioning of the patient, no new noise).
"""

from __future__ import annotations

import numpy as np

from boneqct.errors import SpineError
from boneqct.precision.statistics import DEFAULT_CONFIDENCE, SitePrecision, site_precision
from boneqct.volume import Volume


def _offsets_in_ball_mm(rng: np.random.Generator, n: int, radius_mm: float) -> np.ndarray:
    """``n`` points uniformly distributed in a ball of ``radius_mm`` (mm)."""
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * radius_mm * rng.random((n, 1)) ** (1.0 / 3.0)


def repositioning_study(volume_hu: Volume, calibration, seeds: dict, n_runs: int = 10,
                        perturbation_mm: float = 3.0, random_seed: int = 0,
                        confidence: float = DEFAULT_CONFIDENCE, options=None) -> dict:
    """Per-level BMD (mg/cm3; HU without a calibration) over ``n_runs`` perturbed placements.

    Args:
        volume_hu: CT in HU.
        calibration: a ``Calibration`` or None (then the values are mean HU).
        seeds: level -> seed point (RAS mm) inside the vertebral body.
        n_runs: number of placements (>= 2).
        perturbation_mm: radius (mm) of the ball the seed offsets are drawn from.
        random_seed: seed of the offsets' random generator (the study is reproducible).
        confidence: confidence level of the upper limits.
        options: ``boneqct.spine.options.SpineOptions`` of every run (None: the defaults).

    Returns:
        {"unit", "n_runs", "perturbation_mm", "runs": [{"run", "level", "value",
        "seed_ras_mm", "roi_center_ras_mm"}], "levels": [SitePrecision dicts, one per level,
        each subject being the scan]}.
    """
    from boneqct.spine.pipeline import analyze_spine

    if n_runs < 2:
        raise ValueError("a repositioning study needs at least 2 runs")
    rng = np.random.default_rng(random_seed)
    runs = []
    for run in range(n_runs):
        offsets = _offsets_in_ball_mm(rng, len(seeds), perturbation_mm)
        moved = {level: np.asarray(p, float) + d for (level, p), d in
                 zip(seeds.items(), offsets, strict=True)}
        result = analyze_spine(volume_hu, calibration, options, seeds=moved)
        for lv in result.levels:
            if not lv.measured:
                raise SpineError(f"Repositioning run {run + 1}: {lv.level} could not be measured "
                                 f"from a seed moved by up to {perturbation_mm:g} mm ({lv.reason})."
                                 " Use a smaller --perturbation-mm or check the seed.")
            value = lv.bmd_mg_cm3 if calibration is not None else lv.mean_hu
            runs.append({"run": run, "level": lv.level, "value": float(value),
                         "seed_ras_mm": moved[lv.level].tolist(),
                         "roi_center_ras_mm": lv.roi_center_ras_mm})
    levels: list[SitePrecision] = [
        site_precision({"scan": [r["value"] for r in runs if r["level"] == level]}, level,
                       confidence)
        for level in seeds
    ]
    return {"unit": "mg/cm3" if calibration is not None else "HU", "n_runs": n_runs,
            "perturbation_mm": perturbation_mm, "random_seed": random_seed, "runs": runs,
            "levels": [vars(p) for p in levels]}
