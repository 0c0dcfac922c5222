"""Cohort batches on Dask distributed: a manifest of cases (``manifest``), a manifest written
from a folder of studies (``scan``), and the resumable run with its summary and cohort report
(``run``). See docs/batch.md."""

from boneqct.batch.manifest import Case, read_manifest
from boneqct.batch.run import BatchRun, read_run_log, run

__all__ = ["BatchRun", "Case", "read_manifest", "read_run_log", "run"]
