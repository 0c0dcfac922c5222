"""One case of a batch, run on a Dask worker in a process of its own.

The worker keeps a case server (``boneqct.batch.child``): a process that has imported the
single-case command once, with the batch's thread budget, and forks one process per case. On
a LocalCluster each worker starts its server as the worker starts (``CaseServerStart``), so
its imports overlap the cluster's start (``boneqct.batch.worker_plugin``); elsewhere the
first case starts it.
The worker asks it for a case, waits at most the case's time limit, and kills the case's
whole session when it is exceeded. Whatever the case does - refuse its input, crash, run out
of memory, hang - the worker returns a record and goes on with the next case.
"""

from __future__ import annotations

import datetime
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from boneqct import __version__
from boneqct.batch.child import thread_environment

#: Exit code of the single-case command for a problem with the input (boneqct.cli).
EXIT_INPUT_ERROR = 2
#: Seconds given to a killed case's process group to go before the worker stops waiting.
KILL_GRACE_S = 10.0
#: What Python prints when an allocation or a library load fails under the address-space
#: limit (numpy, the import machinery, and the command's own message for a MemoryError).
OUT_OF_MEMORY_HINTS = ("MemoryError", "Unable to allocate", "failed to map segment",
                       "Cannot allocate memory", "this machine ran out of memory")


class CaseServerLost(Exception):
    """The case server ended, or did not answer in time; the message says what it printed."""


class CaseServer:
    """A ``boneqct.batch.child`` server with ``threads`` threads per library that imports
    ``packages`` (names of ``boneqct`` packages; all of them when empty); ``ready`` once it
    has said it imported them."""

    def __init__(self, threads: int, packages: tuple[str, ...]):
        self.threads, self.packages, self.ready = threads, packages, False
        self._errors = tempfile.TemporaryFile()
        self._pending = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "boneqct.batch.child", str(threads), *packages],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env={**_without_nanny_environment(os.environ), **thread_environment(threads)})

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until the server has imported the command (CaseServerLost if it ends or takes
        longer than ``timeout_s``)."""
        if self.ready:
            return
        if self.read(timeout_s) is None:
            raise CaseServerLost(f"it did not import the command within {timeout_s:g} s")
        self.ready = True

    def send(self, request: dict) -> None:
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            raise CaseServerLost(self._said()) from None

    def read(self, timeout_s: float) -> dict | None:
        """The server's next message, or None when none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise CaseServerLost(self._said())
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """End the server (its cases end with it)."""
        self.process.kill()
        self.process.wait()
        self._errors.close()

    def _said(self) -> str:
        """The last line the server wrote on its standard error, or its exit code."""
        self._errors.seek(0)
        lines = [x.strip() for x in self._errors.read().decode(errors="replace").splitlines()
                 if x.strip()]
        code = self.process.poll()
        return lines[-1][:300] if lines else f"exit code {code}" if code is not None else \
            "no answer"


def _without_nanny_environment(environ) -> dict[str, str]:
    """``environ`` without what a Dask nanny sets for its worker (``distributed.nanny.
    pre-spawn-environ``: ``MALLOC_TRIM_THRESHOLD_=65536`` and one thread per library), so
    that a case runs in the environment the single-case command has. glibc's malloc then
    gives memory back to the system at every free above 64 kB: measured on a small spine
    case, 5.5 s instead of 4.2 s (the thread variables are set by the batch itself)."""
    import dask.config
    import distributed  # noqa: F401 - its defaults enter dask.config on import

    spawn = dask.config.get("distributed.nanny.pre-spawn-environ", default={})
    return {k: v for k, v in environ.items() if not (k in spawn and v == str(spawn[k]))}


#: Idle case servers of this worker process, by threads per case and packages; a server runs
#: one case at a time, so a worker running several cases at once has as many servers.
_IDLE: dict[tuple[int, tuple[str, ...]], list[CaseServer]] = {}
_IDLE_LOCK = threading.Lock()


def close_idle_servers(threads: int, packages: tuple[str, ...]) -> None:
    """End this worker process's idle case servers of ``threads`` and ``packages``."""
    with _IDLE_LOCK:
        servers = _IDLE.pop((threads, packages), [])
    for server in servers:
        server.close()


def _take_server(threads: int, packages: tuple[str, ...],
                 timeout_s: float) -> tuple[CaseServer, float]:
    """An idle case server, or a new one, once it has imported the command (at most
    ``timeout_s``); and the seconds spent waiting for its imports (0 for a ready one)."""
    server = None
    with _IDLE_LOCK:
        idle = _IDLE.setdefault((threads, packages), [])
        while idle and server is None:
            server = idle.pop()
            if server.process.poll() is not None:
                server.close()
                server = None
    started = time.monotonic()
    server = server or CaseServer(threads, packages)
    try:
        server.wait_ready(timeout_s)
    except CaseServerLost:
        server.close()
        raise
    return server, time.monotonic() - started


def give_back(server: CaseServer) -> None:
    """Keep ``server`` as an idle case server of this worker process."""
    with _IDLE_LOCK:
        _IDLE.setdefault((server.threads, server.packages), []).append(server)


def now_utc() -> str:
    """The current time, UTC, ISO 8601 to the millisecond."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def run_case(case_id: str, argv: list[str], log_path: str, timeout_s: float,
             memory_limit_gb: float, test_hang: bool = False, threads: int = 1,
             packages: tuple[str, ...] = ()) -> dict:
    """Run one case's single-case command line ``argv`` (``spine CT --out DIR ...``) in a
    process limited to ``timeout_s`` seconds and ``memory_limit_gb`` GB of address space,
    forked by this worker's case server with ``threads`` threads per numerical library, which
    imported the ``boneqct`` ``packages`` (all when empty); its output goes to ``log_path``. ``test_hang`` (the batch's test hook) makes the case's
    process sleep instead of measuring.

    Returns the run-log record: ``case_id``, ``start_utc``, ``end_utc``, ``elapsed_s`` (the
    case process's wall time), ``cpu_s`` (its CPU time), ``server_start_s`` (seconds spent
    waiting for this worker's case server to import the command before the case; 0 when
    one was ready), ``threads``, ``worker`` (host and process), ``status`` (``ok``, ``failed``,
    ``timeout``), ``message`` (the command's error, or why the case stopped) and
    ``tool_version``.
    """
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ boneqct {' '.join(argv)}\n", encoding="utf-8")
    record = {"case_id": case_id, "start_utc": None, "end_utc": None, "elapsed_s": None,
              "cpu_s": None, "server_start_s": None, "threads": threads,
              "worker": f"{socket.gethostname()}:{os.getpid()}", "tool_version": __version__}
    try:
        server, record["server_start_s"] = _take_server(threads, packages, timeout_s)
    except CaseServerLost as exc:
        return {**record, "end_utc": now_utc(), "status": "failed",
                "message": f"the worker's case server did not start ({exc})"}
    record["start_utc"], started = now_utc(), time.monotonic()
    try:
        server.send({"argv": argv, "log": str(log), "memory_limit_gb": memory_limit_gb,
                     "hang": test_hang})
        status, message, cpu_s = _wait(server, timeout_s, memory_limit_gb, log)
        give_back(server)
    except CaseServerLost as exc:
        server.close()
        status, message, cpu_s = "failed", (f"the worker's case server ended during the case "
                                            f"({exc}); the case was lost"), None
    return {**record, "end_utc": now_utc(), "elapsed_s": round(time.monotonic() - started, 3),
            "cpu_s": cpu_s, "status": status, "message": message}


def _wait(server: CaseServer, timeout_s: float, memory_limit_gb: float,
          log: Path) -> tuple[str, str, float | None]:
    """Status, message and CPU seconds of the case just sent to ``server``."""
    deadline = time.monotonic() + timeout_s
    forked = server.read(timeout_s)
    if forked is None:
        raise CaseServerLost("it did not start the case")
    finished = server.read(deadline - time.monotonic())
    if finished is None:
        _kill_session(forked["pid"])
        if server.read(KILL_GRACE_S) is None:
            raise CaseServerLost(f"the case did not end within {KILL_GRACE_S:g} s of SIGKILL")
        return "timeout", (f"no result within the time limit of {timeout_s:g} s; the case "
                           "was stopped (raise --timeout-s for large cases)"), None
    status, message = _outcome(finished["returncode"],
                               log.read_text(encoding="utf-8", errors="replace"),
                               memory_limit_gb)
    return status, message, finished["cpu_s"]


def _kill_session(pid: int) -> None:
    """Kill the case's process and anything it started (its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # not yet the leader of its session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _outcome(returncode: int, output: str, memory_limit_gb: float) -> tuple[str, str]:
    """Status and message of a finished case process from its exit code and its log."""
    if returncode == 0:
        return "ok", ""
    lines = [line.strip() for line in output.splitlines()[1:] if line.strip()]
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
