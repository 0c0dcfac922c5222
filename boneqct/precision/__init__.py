"""Precision studies: short-term precision from repeated measurements, and the software's own
share of it from repeated ROI placement on one scan.

``precision_from_table`` computes, per site, the RMS-SD and RMS-CV with their degrees of
freedom and upper confidence limits (Glueer et al. 1995, Osteoporos Int 5:262) and the least
significant change at 95% (ISCD: LSC = 2.77 x precision). ``repositioning_study`` re-runs the
spine ROI placement from perturbed seed points on one scan.
"""

from boneqct.precision.repositioning import repositioning_study
from boneqct.precision.statistics import (
    LSC_FACTOR_95,
    SitePrecision,
    precision_from_table,
    read_precision_table,
    site_precision,
    write_precision_outputs,
)

__all__ = [
    "LSC_FACTOR_95",
    "SitePrecision",
    "precision_from_table",
    "read_precision_table",
    "repositioning_study",
    "site_precision",
    "write_precision_outputs",
]
