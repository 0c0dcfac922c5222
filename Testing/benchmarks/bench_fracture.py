"""Benchmark: vertebral fracture assessment of the tilted deformity phantoms of
Testing/test_fracture.py (L1-L5: biconcave L1, crush L3, wedge L5, tilted 10 degrees) at 1 mm
and 3 mm slices.

Times ``measure_heights`` per level (goal: under 1 s per level, issue 15) and prints each
height's error against the analytic truth (goals: within 0.5 mm at 1 mm slices, 1 mm at 3 mm)
with the grade and type.
Run: ``python Testing/benchmarks/bench_fracture.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_fracture import LEVELS, PARAMS, _scanner, _seeds, _true_heights  # noqa: E402

from boneqct.phantoms import make_spine_phantom  # noqa: E402
from boneqct.spine.body import delineate_body_from_seed  # noqa: E402
from boneqct.spine.fracture import grade_levels, measure_heights  # noqa: E402


def main() -> None:
    for slice_mm, seed in ((1.0, 11), (3.0, 12)):
        phantom = make_spine_phantom(PARAMS, _scanner(slice_mm), seed=seed)
        bodies = [delineate_body_from_seed(phantom.volume, centre, level)
                  for level, centre in _seeds(phantom).items()]
        start = time.perf_counter()
        measured = {body.level: measure_heights(phantom.volume, body) for body in bodies}
        seconds = (time.perf_counter() - start) / len(bodies)
        fractures = grade_levels(measured)
        print(f"{slice_mm:g} mm slices: {seconds:.2f} s per level")
        worst_mm = 0.0
        for level in LEVELS:
            fracture = fractures[level]
            truth = _true_heights(phantom, fracture, level)
            errors = {name: fracture["heights_mm"][name] - truth[name] for name in truth}
            worst_mm = max(worst_mm, *map(abs, errors.values()))
            print(f"  {level}: grade {fracture['genant_grade']} {fracture['type'] or '-':9s} "
                  + "  ".join(f"{name} {fracture['heights_mm'][name]:5.2f} mm "
                              f"({errors[name]:+.2f})" for name in truth))
        print(f"  largest height error {worst_mm:.2f} mm")


if __name__ == "__main__":
    main()
