"""One case of a batch, run on a Dask worker in a process of its own.

The worker starts ``boneqct.batch.child`` (the single-case command under an address-space
limit) as a subprocess in a new session, waits at most the case's time limit, and kills the
whole session when it is exceeded. Whatever the case does - refuse its input, crash, run out of
memory, hang - the worker returns a record and goes on with the next case.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from boneqct import __version__
from boneqct.batch.child import HANG_ENV

#: Exit code of the single-case command for a problem with the input (boneqct.cli).
EXIT_INPUT_ERROR = 2
#: Seconds given to a killed case's process group to go before the worker stops waiting.
KILL_GRACE_S = 10.0
#: What Python prints when an allocation or a library load fails under the address-space
#: limit (numpy, the import machinery, and the command's own message for a MemoryError).
OUT_OF_MEMORY_HINTS = ("MemoryError", "Unable to allocate", "failed to map segment",
                       "Cannot allocate memory", "this machine ran out of memory")


def now_utc() -> str:
    """The current time, UTC, ISO 8601 to the millisecond."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def run_case(case_id: str, argv: list[str], log_path: str, timeout_s: float,
             memory_limit_gb: float, test_hang: bool = False) -> dict:
    """Run one case's single-case command line ``argv`` (``spine CT --out DIR ...``) in a
    subprocess limited to ``timeout_s`` seconds and ``memory_limit_gb`` GB of address space;
    its output goes to ``log_path``. ``test_hang`` (the batch's test hook) makes the case's
    process sleep instead of measuring.

    Returns the run-log record: ``case_id``, ``start_utc``, ``end_utc``, ``elapsed_s``,
    ``worker`` (host and process), ``status`` (``ok``, ``failed``, ``timeout``), ``message``
    (the command's error, or why the case stopped) and ``tool_version``.
    """
    command = [sys.executable, "-m", "boneqct.batch.child", f"{memory_limit_gb:g}", *argv]
    environment = {**os.environ, HANG_ENV: "1" if test_hang else "0"}
    start, started = now_utc(), time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, errors="replace",
                               start_new_session=True, env=environment)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
        status, message = _outcome(process.returncode, stderr, memory_limit_gb)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        try:
            stdout, stderr = process.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            stdout, stderr = "", ""
        status, message = "timeout", (f"no result within the time limit of {timeout_s:g} s; "
                                      "the case was stopped (raise --timeout-s for large "
                                      "cases)")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(log_path).write_text(f"$ boneqct {' '.join(argv)}\n{stdout}{stderr}", encoding="utf-8")
    return {"case_id": case_id, "start_utc": start, "end_utc": now_utc(),
            "elapsed_s": round(time.monotonic() - started, 3),
            "worker": f"{socket.gethostname()}:{os.getpid()}", "status": status,
            "message": message, "tool_version": __version__}


def _kill_session(process: subprocess.Popen) -> None:
    """Kill the case's process and anything it started (its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _outcome(returncode: int, stderr: str, memory_limit_gb: float) -> tuple[str, str]:
    """Status and message of a finished case process."""
    if returncode == 0:
        return "ok", ""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if any(hint in line for line in lines for hint in OUT_OF_MEMORY_HINTS):
        return "failed", (f"the case ran out of its memory limit of {memory_limit_gb:g} GB "
                          "(raise --memory-limit-gb, or crop the CT)")
    errors = [line.split(": error: ", 1)[1] for line in lines if ": error: " in line]
    if returncode == EXIT_INPUT_ERROR and errors:
        return "failed", errors[-1]
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() \
            else str(-returncode)
        return "failed", f"the case's process was killed by {name} (crash or out of memory)"
    last = lines[-1] if lines else "no message"
    return "failed", f"the case's process ended with exit code {returncode}: {last[:300]}"
