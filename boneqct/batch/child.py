"""The case server of a batch worker: ``python -m boneqct.batch.child THREADS [PACKAGE ...]``.

A worker starts one case server (``boneqct.batch.case``) and keeps it for the cases it runs.
The server limits the numerical libraries to THREADS threads each (the environment it is
started with, see ``thread_environment``, and SimpleITK's global default), imports the
single-case command (``boneqct.cli``: numpy, scipy, SimpleITK, matplotlib, reportlab, pydicom),
builds its argument parser (which imports each command's options), and imports every module
of the PACKAGEs named (the batch's analyses, e.g. ``boneqct.spine``; all of ``boneqct`` when
none is named) once, and then forks one process per case. So a case starts from a fresh copy
of an interpreter that has imported the command and done nothing else, and runs
``boneqct.cli.main`` exactly as ``boneqct COMMAND ...`` does, without paying the imports again
(measured on a small spine case, quiet machine: 3.8 s to import the command and the spine
package - 5.2 s with every package, vtk and highdicom included - against 4.6 s for the
measurement itself).

Protocol, one JSON object per line: the server writes ``{"ready": true, "import_s": S}`` once
it has imported the command; then for each request ``{"argv": [...], "log": PATH,
"memory_limit_gb": GB, "hang": false}`` read on stdin it forks the case and writes ``{"pid":
PID}``, waits for it and writes ``{"pid": PID, "returncode": RC, "cpu_s": S}`` (RC negative:
killed by that signal; ``cpu_s``: the case process's user and system CPU time).

The case process starts a session of its own (the worker kills the session at its time
limit), is killed when the server ends (Linux ``PR_SET_PDEATHSIG``; the server in turn when
its worker ends, so no case outlives its batch), appends its standard output and error to
the log file, and caps its address space at the request's limit (``resource.RLIMIT_AS``; an
allocation beyond it raises ``MemoryError``).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import pkgutil
import resource
import signal
import sys
import time
import traceback

from boneqct.resources import BYTES_PER_GB

#: prctl option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Environment variables that set the thread pools of the numerical libraries a case uses:
#: OpenMP, OpenBLAS, MKL (numpy, scipy), ITK (SimpleITK) and VTK's SMP tools. They are read
#: when the libraries load, so they are set in the server's environment before its imports.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "VTK_SMP_MAX_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that give each numerical library ``threads`` threads."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the process that started it ends."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _reply(reply_fd: int, message: dict) -> None:
    """One protocol line to the worker (unbuffered: a forked case inherits no pending bytes)."""
    os.write(reply_fd, (json.dumps(message) + "\n").encode())


def _run_case(command, request: dict, reply_fd: int) -> None:
    """In the forked process: run one case and exit with the command's exit code."""
    code = 1
    try:
        os.setsid()
        _die_with_parent()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(source, target)
        os.close(reply_fd)
        _limit_address_space(float(request["memory_limit_gb"]))
        while request.get("hang"):  # the batch's test hook
            time.sleep(60)
        code = command(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # what the command did not handle ends the case, as it would alone
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, MemoryError):
                pass
        os._exit(code if isinstance(code, int) else 1)


def _limit_address_space(limit_gb: float) -> None:
    """Cap this process's address space at ``limit_gb``; a MemoryError when the libraries
    already take more (Linux: what /proc says they map)."""
    limit_bytes = int(limit_gb * BYTES_PER_GB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    if os.path.exists("/proc/self/statm"):
        with open("/proc/self/statm") as statm:
            mapped_bytes = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        if mapped_bytes > limit_bytes:
            raise MemoryError(f"the command's libraries take {mapped_bytes / BYTES_PER_GB:.2f} "
                              f"GB of address space, above the limit of {limit_gb:g} GB")
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))


def _import_packages(packages: list[str]) -> None:
    """Import every module of the ``packages`` (names such as ``boneqct.spine``; all of
    ``boneqct`` when empty): the modules a command imports while it runs."""
    for name in packages or ["boneqct"]:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)


def serve(threads: int, packages: list[str], reply_fd: int) -> None:
    """Import the single-case command and ``packages`` with ``threads`` threads per library,
    then fork one process per request read on stdin until stdin closes; replies go to
    ``reply_fd``."""
    _die_with_parent()
    started = time.perf_counter()
    import SimpleITK

    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    from boneqct.cli import build_parser
    from boneqct.cli import main as command

    build_parser()
    _import_packages(packages)
    _reply(reply_fd, {"ready": True, "import_s": round(time.perf_counter() - started, 3)})
    requests = sys.stdin.buffer
    for line in iter(requests.readline, b""):
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_case(command, request, reply_fd)
        _reply(reply_fd, {"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _reply(reply_fd, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)})


if __name__ == "__main__":
    # the protocol keeps the standard output for itself: whatever the imports print goes to
    # the server's standard error
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    serve(int(sys.argv[1]), sys.argv[2:], protocol_fd)
