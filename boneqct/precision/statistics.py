"""RMS-SD, RMS-CV, their confidence limits and the least significant change.

For subject j with n_j repeated values x_ij (mean m_j):
``SD_j^2 = sum_i (x_ij - m_j)^2 / (n_j - 1)`` and ``CV_j = SD_j / m_j``. The root-mean-square
averages weight each subject by its degrees of freedom (Glueer et al. 1995, Osteoporos Int
5:262, eq. 4; with equal n this is ISCD's ``sqrt(sum SD_j^2 / m)``):

    RMS-SD = sqrt(sum_j (n_j - 1) SD_j^2 / df),  df = sum_j (n_j - 1)

and likewise RMS-CV. ``df * RMS-SD^2 / sigma^2`` is chi-square with df degrees of freedom, so
the two-sided ``confidence`` interval of sigma has the upper limit
``RMS-SD * sqrt(df / chi2.ppf((1 - confidence) / 2, df))`` (Glueer 1995 tabulates the 90%
interval: about +27% for 30 df). LSC at 95% = 2.77 x precision, 2.77 = 1.96 x sqrt(2) (ISCD).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy

from boneqct.errors import PrecisionError
from boneqct.io.atomic import write_json_atomic, write_text_atomic

#: LSC at 95% confidence = 1.96 * sqrt(2) * precision, rounded as ISCD writes it (2.77).
LSC_FACTOR_95 = 2.77
#: Glueer 1995 reports the upper limit of the two-sided 90% confidence interval.
DEFAULT_CONFIDENCE = 0.90
TABLE_COLUMNS = ("subject", "repeat", "site", "value")


@dataclass
class SitePrecision:
    """Precision of one measurement site (value units as in the table, e.g. mg/cm3).

    Attributes:
        site: site name (e.g. "L1-L2 mean").
        n_subjects: subjects with at least two repeats (others are ignored).
        n_measurements: values used.
        degrees_of_freedom: sum over subjects of (repeats - 1).
        mean_value: mean of the subjects' means.
        rms_sd: root-mean-square SD (value units).
        rms_sd_upper: upper limit of its two-sided ``confidence`` interval.
        rms_cv_percent, rms_cv_upper_percent: the same for the coefficient of variation (%).
        lsc_95: least significant change at 95% from RMS-SD (value units).
        lsc_95_percent: LSC at 95% from RMS-CV (%).
        confidence: confidence level of the upper limits.
    """

    site: str
    n_subjects: int
    n_measurements: int
    degrees_of_freedom: int
    mean_value: float
    rms_sd: float
    rms_sd_upper: float
    rms_cv_percent: float
    rms_cv_upper_percent: float
    lsc_95: float
    lsc_95_percent: float
    confidence: float


def site_precision(values_by_subject: dict, site: str = "",
                   confidence: float = DEFAULT_CONFIDENCE) -> SitePrecision:
    """Precision of one site from ``{subject: [repeated values]}``.

    Raises:
        PrecisionError: no subject has two or more repeats, or a subject's mean is zero.
    """
    groups = [np.asarray(v, dtype=float) for v in values_by_subject.values() if len(v) >= 2]
    if not groups:
        raise PrecisionError(
            f"Site '{site}' has no subject measured at least twice. A precision study needs "
            "repeated measurements of each subject (ISCD: 15 subjects x 3 or 30 x 2).")
    dof = np.array([len(g) - 1 for g in groups])
    means = np.array([g.mean() for g in groups])
    if np.any(means == 0):
        raise PrecisionError(f"Site '{site}' has a subject whose mean value is zero, so its "
                             "coefficient of variation is undefined; check the table's values.")
    variances = np.array([g.var(ddof=1) for g in groups])
    df = int(dof.sum())
    rms_sd = float(np.sqrt(np.sum(dof * variances) / df))
    rms_cv = float(np.sqrt(np.sum(dof * variances / means**2) / df))
    upper_factor = float(np.sqrt(df / scipy.stats.chi2.ppf((1.0 - confidence) / 2.0, df)))
    return SitePrecision(
        site=site, n_subjects=len(groups), n_measurements=int(sum(len(g) for g in groups)),
        degrees_of_freedom=df, mean_value=float(means.mean()), rms_sd=rms_sd,
        rms_sd_upper=rms_sd * upper_factor, rms_cv_percent=100.0 * rms_cv,
        rms_cv_upper_percent=100.0 * rms_cv * upper_factor, lsc_95=LSC_FACTOR_95 * rms_sd,
        lsc_95_percent=LSC_FACTOR_95 * 100.0 * rms_cv, confidence=confidence)


def precision_from_table(rows: list[dict], confidence: float = DEFAULT_CONFIDENCE) -> list[SitePrecision]:
    """Per-site precision from rows with keys subject, repeat, site, value (any order)."""
    by_site: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_site[str(row["site"])][str(row["subject"])].append(float(row["value"]))
    return [site_precision(subjects, site, confidence) for site, subjects in by_site.items()]


def read_precision_table(path: str | Path) -> list[dict]:
    """Read a CSV with the columns subject, repeat, site, value (value numeric).

    Raises:
        PrecisionError: unreadable file, missing columns, or a non-numeric value.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in TABLE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PrecisionError(
                    f"The precision table '{path.name}' lacks the column(s) {', '.join(missing)}. "
                    f"It needs a header row with {', '.join(TABLE_COLUMNS)} and one row per "
                    "measurement.")
            rows = [dict(row) for row in reader]
    except OSError:
        raise PrecisionError(f"Cannot read the precision table '{path.name}'; check the path.") from None
    for number, row in enumerate(rows, start=2):
        try:
            row["value"] = float(row["value"])
        except (TypeError, ValueError):
            raise PrecisionError(f"Row {number} of '{path.name}' has the non-numeric value "
                                 f"'{row['value']}'; every value must be a number.") from None
    return rows


def write_precision_outputs(out_dir: str | Path, results: list[SitePrecision],
                            unit: str = "") -> dict[str, Path]:
    """Write precision.json and precision.csv (one row per site) atomically."""
    out_dir = Path(out_dir)
    documents = [asdict(r) for r in results]
    paths = {"json": write_json_atomic(out_dir / "precision.json",
                                       {"unit": unit, "sites": documents,
                                        "method": "Glueer 1995 RMS with degrees of freedom; "
                                                  f"LSC 95% = {LSC_FACTOR_95} x precision"})}
    header = list(documents[0]) if documents else []
    lines = [",".join(header)] + [",".join(str(d[h]) for h in header) for d in documents]
    paths["csv"] = write_text_atomic(out_dir / "precision.csv", "\n".join(lines) + "\n")
    return paths
