"""Benchmark: vertebral fracture assessment of the tilted deformity phantoms of
Testing/test_fracture.py (L1-L5: biconcave L1, crush L3, wedge L5, tilted 10 degrees) at 1 mm
and 3 mm slices, over several noise seeds.

Times ``measure_heights`` per level (goal: under 1 s per level, issue 15) and prints, for
each slice spacing and noise seed, the largest height error against the analytic truth
(goals: within 0.5 mm at 1 mm slices, 1 mm at 3 mm), whether every level's grade and type
match those of the true heights, and the levels whose quality failed (no grade: allowed, but
counted). ``--verbose`` prints every height.

``--slice-samples N`` renders the phantoms' rectangular slice profile with N sub-slices instead
of the phantom's own (one per in-plane sub-pixel: 8, 0.375 mm apart, at 3 mm slices, each
pixel's 2x2 in-plane samples shifted across a sub-slice, so a pixel samples 32 depths): a
diagnostic of how much the heights move with the rendering alone. Without the shifts, a 1 mm
endplate nearly parallel to the slices (the wedge's inferior endplate, 3.5 degrees) covered
2 or 3 of the 8 samples, its rendered partial volume stepping by about a third along it.
Run: ``python Testing/benchmarks/bench_fracture.py [--seeds 11,12,...] [--slices 1,3]
[--slice-samples 30] [--verbose]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_fracture import (  # noqa: E402
    LEVELS,
    PARAMS,
    _scanner,
    _seeds,
    _true_grade,
    _true_heights,
)

from boneqct.phantoms import make_spine_phantom, spine_phantom  # noqa: E402
from boneqct.phantoms.scanner import subsample_offsets_mm  # noqa: E402
from boneqct.spine.body import delineate_body_from_seed  # noqa: E402
from boneqct.spine.fracture import grade_levels, measure_heights  # noqa: E402

#: Height error goals (mm) by slice spacing (mm), issue 15.
GOALS_MM = {1.0: 0.5, 3.0: 1.0}


def run_case(slice_mm: float, seed: int, verbose: bool) -> dict:
    """Assess the phantom at one slice spacing and noise seed: the largest height error
    (mm) and where, whether grades and types match the truth's, the failed levels, s/level."""
    phantom = make_spine_phantom(PARAMS, _scanner(slice_mm), seed=seed)
    bodies = [delineate_body_from_seed(phantom.volume, centre, level)
              for level, centre in _seeds(phantom).items()]
    start = time.perf_counter()
    measured = {body.level: measure_heights(phantom.volume, body) for body in bodies}
    seconds = (time.perf_counter() - start) / len(bodies)
    fractures = grade_levels(measured)
    truths = {level: _true_heights(phantom, fractures[level], level) for level in LEVELS
              if fractures[level]["heights_mm"] is not None}
    worst = (0.0, "")
    grades_exact, failed = True, []
    for index, level in enumerate(LEVELS):
        fracture = fractures[level]
        if level not in truths:
            failed.append(level)
            continue
        truth = truths[level]
        errors = {name: fracture["heights_mm"][name] - truth[name] for name in truth}
        name = max(errors, key=lambda n: abs(errors[n]))
        if fracture["quality"]["passed"]:  # a failed level's heights carry no grade
            worst = max(worst, (abs(errors[name]), f"{level} {name}"))
        neighbours = [truths[n] for n in LEVELS[max(index - 1, 0):index + 2]
                      if n != level and n in truths]
        expected = _true_grade(truth, neighbours)
        got = (fracture["genant_grade"], fracture["type"])
        if not fracture["quality"]["passed"]:
            failed.append(level)
        elif got != expected:
            grades_exact = False
        if verbose:
            print(f"    {level}: grade {got[0]} {got[1] or '-':9s} (truth {expected[0]} "
                  f"{expected[1] or '-'}) " + "  ".join(
                      f"{n} {fracture['heights_mm'][n]:5.2f} ({errors[n]:+.2f})" for n in truth)
                  + ("" if fracture["quality"]["passed"]
                     else f"  FAILED: {fracture['quality']['reason']}"))
    return {"worst_mm": worst[0], "where": worst[1], "grades_exact": grades_exact,
            "failed": failed, "seconds_per_level": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="11,12,13,14,15,16,17,18",
                        help="noise seeds, comma-separated")
    parser.add_argument("--slices", default="1,3", help="slice spacings (mm), comma-separated")
    parser.add_argument("--slice-samples", type=int, default=None,
                        help="sub-slices sampling each slice's profile (default: the phantom's)")
    parser.add_argument("--verbose", action="store_true", help="print every level's heights")
    args = parser.parse_args()
    if args.slice_samples:
        spine_phantom.slice_profile_offsets_mm = lambda scanner: subsample_offsets_mm(
            args.slice_samples, scanner.slice_thickness_mm)
    seeds = [int(s) for s in args.seeds.split(",")]
    for slice_mm in (float(s) for s in args.slices.split(",")):
        goal_mm = GOALS_MM.get(slice_mm, slice_mm / 3.0)
        print(f"{slice_mm:g} mm slices (goal: heights within {goal_mm:g} mm, grades exact)")
        results = []
        for seed in seeds:
            result = run_case(slice_mm, seed, args.verbose)
            results.append(result)
            within = result["worst_mm"] <= goal_mm
            print(f"  seed {seed:3d}: worst {result['worst_mm']:.2f} mm ({result['where']})"
                  f" {'ok ' if within else 'OUT'}  grades "
                  f"{'exact' if result['grades_exact'] else 'WRONG'}"
                  f"  failed quality: {','.join(result['failed']) or '-'}"
                  f"  {result['seconds_per_level']:.2f} s/level")
        print(f"  {slice_mm:g} mm: worst {max(r['worst_mm'] for r in results):.2f} mm; "
              f"{sum(r['worst_mm'] <= goal_mm for r in results)}/{len(results)} seeds within "
              f"{goal_mm:g} mm; {sum(r['grades_exact'] for r in results)}/{len(results)} with "
              f"grades exact; {sum(bool(r['failed']) for r in results)} with a failed level; "
              f"{max(r['seconds_per_level'] for r in results):.2f} s/level at most")


if __name__ == "__main__":
    main()
