"""Run a manifest of cases on Dask distributed, resumably.

``run(manifest, out_dir)`` starts a ``LocalCluster`` (worker processes, one case at a time each)
unless given a ``distributed.Client`` or a scheduler address, submits one task per case, and
appends each finished case's record to ``out_dir/run_log.jsonl`` as it arrives. A case runs in
a subprocess of its worker with a time and an address-space limit (``boneqct.batch.case``), so
a refused input, a crash, a memory blow-up or a hang marks that case ``failed`` or ``timeout``
and the batch goes on. Each case gets a share of the machine's cores for its numerical
libraries (``threads_per_case``): on a LocalCluster the cores divided by the workers, so that
the cases running at once do not fight for the same cores. ``resume=True`` skips the cases that finished with the same settings,
and the failed ones too unless ``retry_failed``. At the end the summary (``summary.csv``,
``summary.parquet``) and the cohort report cover every case of the manifest.

The output folder must be reachable under the same path from every worker (a shared file
system on a cluster).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from boneqct import __version__
from boneqct.batch.case import now_utc, run_case
from boneqct.batch.manifest import ANALYSIS_PACKAGES, Case, read_manifest
from boneqct.errors import InputError
from boneqct.io.atomic import check_output_folder
from boneqct.resources import DEFAULT_MAX_MEMORY_GB

#: Default time limit of one case, seconds: a spine, hip or tissue case of a clinical CT takes
#: well under a minute here, an FE case at 1 mm elements a few minutes; an hour leaves room for
#: fine FE meshes on slow machines.
DEFAULT_TIMEOUT_S = 3600.0
RUN_LOG = "run_log.jsonl"
#: Test hook: case ids (comma-separated) whose process hangs instead of measuring, so a test
#: can check the time limit; read by ``run`` in the calling process.
TEST_HANG_ENV = "BONEQCT_BATCH_TEST_HANG"
#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT_S = 20


@dataclass
class BatchRun:
    """What a batch did: the summary rows (one per manifest case), the cases run now, the
    cases skipped as already done, the dashboard link, the files written, the threads each
    case was given, and the wall time of the phases, s: ``cluster_start_s`` (starting or
    connecting to the cluster), ``cases_s`` (from the first case submitted to the last
    finished), ``cluster_close_s`` and ``summary_s`` (summary and cohort report)."""

    rows: list[dict]
    ran: list[str]
    skipped: list[str]
    dashboard: str | None
    paths: dict[str, Path]
    threads_per_case: int
    phases_s: dict[str, float]


def read_run_log(out_dir: str | Path) -> dict[str, dict]:
    """The last record of each case in ``out_dir/run_log.jsonl`` (a torn last line, from a
    batch killed while writing it, is ignored)."""
    records = {}
    path = Path(out_dir) / RUN_LOG
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "case_id" in record:
            records[record["case_id"]] = record
    return records


def _check_batch_folder(out_dir: Path, resume: bool) -> Path:
    """The batch folder, absolute and created: new, empty, or (with ``resume``) holding a
    batch; refused (InputError) otherwise."""
    if (out_dir / RUN_LOG).is_file():
        if not resume:
            raise InputError(f"The folder '{out_dir.name}' holds a batch already "
                             "(run_log.jsonl); continue it with --resume, or give a new folder "
                             "with --out.")
        return out_dir.absolute()
    out_dir = check_output_folder(out_dir)  # empty text, the current folder, a file
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise InputError(f"The folder '{out_dir.name}' holds files and no batch (no "
                         "run_log.jsonl); give a new or empty folder with --out.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _append(log_path: Path, record: dict) -> None:
    """Append one record to the run log, flushed to disk."""
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _to_run(cases: list[Case], previous: dict, out_dir: Path, retry_failed: bool) -> list[Case]:
    """Cases without a record for their current settings, plus failed ones when asked."""
    runs = []
    for case in cases:
        record = previous.get(case.case_id)
        same = record is not None and record.get("options_hash") == case.options_hash
        done = same and record["status"] == "ok" and (out_dir / case.case_id).is_dir()
        given_up = same and record["status"] in ("failed", "timeout") and not retry_failed
        if not (done or given_up):
            runs.append(case)
    return runs


def _threads_per_case(client, workers: int | None, threads: int | None) -> int:
    """Threads per case: the given number; on a LocalCluster the usable cores (affinity and
    container quota) shared among its workers; 1 on a cluster given by client or address,
    whose workers are meant to be one per core (as Dask's nanny sets for BLAS)."""
    from dask.system import CPU_COUNT

    if threads is not None:
        return threads
    if client is not None:
        return 1
    return max(1, CPU_COUNT // (workers or CPU_COUNT))


def _packages(cases: list[Case]) -> tuple[str, ...]:
    """The ``boneqct`` packages the cases' analyses run on, for the case servers to import."""
    return tuple(sorted({p for case in cases for p in ANALYSIS_PACKAGES[case.analysis]}))


@contextlib.contextmanager
def _client(client, workers: int | None, memory_limit_gb: float, threads: int,
            packages: tuple[str, ...]):
    """A distributed Client: the one given, one connected to a scheduler address, or one on a
    new LocalCluster of ``workers`` processes (closed at the end) whose workers start their
    case servers (``threads`` per library, importing ``packages``) as they start."""
    import dask
    from distributed import Client, LocalCluster

    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str):
        try:
            connected = Client(client, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"Cannot reach a Dask scheduler at '{client}' ({exc}). Start one "
                             "(`dask scheduler`, a dask-jobqueue or dask-kubernetes cluster) "
                             "and give its address, e.g. tcp://host:8786.") from None
        with connected:
            yield connected
        return

    from dask.system import CPU_COUNT

    from boneqct.batch.worker_plugin import CaseServerStart

    n_workers = workers or CPU_COUNT
    # one case per idle worker: with the default saturation (1.1) a worker takes a second
    # case while busy, and a long case then holds back a short one another worker could run
    saturation = dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
    with saturation, LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR,
                                  memory_limit=f"{memory_limit_gb + 1:g}GB",
                                  plugins=(CaseServerStart(threads, packages),)) as cluster, \
            Client(cluster) as local:
        yield local


def run(manifest, out_dir, client=None, workers: int | None = None, resume: bool = False,
        retry_failed: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_limit_gb: float = DEFAULT_MAX_MEMORY_GB, progress: bool = True,
        threads_per_case: int | None = None) -> BatchRun:
    """Measure every case of ``manifest`` on Dask and write the summary and cohort report.

    Args:
        manifest: a manifest CSV path, or cases from ``read_manifest``.
        out_dir: the batch folder: ``<case_id>/`` per case (the single-case outputs),
            ``logs/<case_id>.log``, ``run_log.jsonl``, ``summary.csv``, ``summary.parquet``,
            ``cohort_report.pdf`` and ``cohort_report.png``.
        client: a ``distributed.Client``, a scheduler address, or None for a LocalCluster.
        workers: worker processes of the LocalCluster (default: the number of CPUs).
        resume: continue the batch in ``out_dir``: finished cases with unchanged settings are
            not run again, nor failed ones unless ``retry_failed``.
        retry_failed: with ``resume``, run the failed and timed-out cases again.
        timeout_s: time limit of one case, seconds (a manifest's ``timeout_s`` column
            replaces it for its case).
        memory_limit_gb: address-space limit of one case's process, GB (a manifest's
            ``memory_limit_gb`` column replaces it for its case).
        progress: show Dask's progress bar and the dashboard link on stderr.
        threads_per_case: threads of each numerical library (OpenMP, OpenBLAS, MKL, ITK,
            VTK) in a case's process; default: on a LocalCluster the CPUs divided by the
            workers, else 1. Hip results change in their last digits with the thread count
            (parallel sums); spine, tissue, VFA and FE did not (docs/batch.md).

    Raises:
        InputError: the output folder holds a batch and ``resume`` is not set, or the
            scheduler cannot be reached; UserFileError: the manifest is refused.
    """
    cases = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
    if not (0 < timeout_s < float("inf")) or not (0 < memory_limit_gb < float("inf")):
        raise InputError("The time limit and the memory limit of a case must be positive "
                         "numbers (seconds, GB).")
    if retry_failed and not resume:
        raise InputError("Retrying failed cases continues an earlier batch; add --resume.")
    if threads_per_case is not None and threads_per_case < 1:
        raise InputError("A case needs at least one thread (threads_per_case).")
    out_dir = _check_batch_folder(Path(out_dir), resume)
    previous = read_run_log(out_dir)
    todo = _to_run(cases, previous, out_dir, retry_failed)
    hang = {c.strip() for c in os.environ.get(TEST_HANG_ENV, "").split(",") if c.strip()}
    threads = _threads_per_case(client, workers, threads_per_case)
    dashboard, phases_s, clock = None, {}, time.perf_counter()
    if todo:
        packages = _packages(todo)
        with _client(client, workers, memory_limit_gb, threads, packages) as dask_client:
            phases_s["cluster_start_s"], clock = _lap(clock)
            dashboard = dask_client.dashboard_link
            if progress:
                print(f"Dask dashboard: {dashboard}", file=sys.stderr)
            _compute(dask_client, todo, out_dir, timeout_s, memory_limit_gb, threads, packages,
                     hang, progress)
            phases_s["cases_s"], clock = _lap(clock)
        phases_s["cluster_close_s"], clock = _lap(clock)
    from boneqct.batch.report import write_cohort_report
    from boneqct.batch.summary import summary_row, write_summary

    records = read_run_log(out_dir)
    rows = [summary_row(case, records.get(case.case_id), out_dir) for case in cases]
    paths = {**write_summary(rows, out_dir), **{
        f"report_{k}": v for k, v in write_cohort_report(rows, out_dir).items()}}
    phases_s["summary_s"], _ = _lap(clock)
    ran = {c.case_id for c in todo}
    return BatchRun(rows, [c.case_id for c in cases if c.case_id in ran],
                    [c.case_id for c in cases if c.case_id not in ran], dashboard, paths,
                    threads, phases_s)


def _lap(clock: float) -> tuple[float, float]:
    """Seconds since ``clock`` (rounded) and the new clock."""
    now = time.perf_counter()
    return round(now - clock, 3), now


def _compute(client, cases: list[Case], out_dir: Path, timeout_s: float,
             memory_limit_gb: float, threads: int, packages: tuple[str, ...], hang: set[str],
             progress: bool) -> None:
    """Submit one task per case and log each record as its case finishes."""
    from distributed import as_completed
    from distributed import progress as progress_bar

    token = uuid.uuid4().hex[:8]
    futures = {client.submit(
        run_case, case.case_id, case.argv(out_dir / case.case_id),
        str(out_dir / "logs" / f"{case.case_id}.log"), case.limits.get("timeout_s", timeout_s),
        case.limits.get("memory_limit_gb", memory_limit_gb), case.case_id in hang, threads,
        packages, key=f"boneqct-case-{case.case_id}-{token}", pure=False): case
        for case in cases}
    with contextlib.ExitStack() as stack:
        bar = None
        if progress:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            bar = threading.Thread(target=progress_bar, args=(list(futures),), daemon=True,
                                   kwargs={"notebook": False, "multi": False})
            bar.start()
        for future in as_completed(futures):
            case = futures[future]
            try:
                record = future.result()
            except Exception as exc:  # e.g. KilledWorker: the workers running it died
                record = {"case_id": case.case_id, "start_utc": None, "end_utc": now_utc(),
                          "worker": None, "status": "failed", "tool_version": __version__,
                          "message": f"the case's Dask task failed ({type(exc).__name__}: "
                                     f"{str(exc)[:200]}); see the scheduler's log"}
            _append(out_dir / RUN_LOG, {**record, "analysis": case.analysis,
                                        "options_hash": case.options_hash})
        if bar is not None:
            bar.join()
            print(file=sys.stderr)
