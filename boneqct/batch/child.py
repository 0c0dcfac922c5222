"""The process one batch case runs in: ``python -m boneqct.batch.child LIMIT_GB COMMAND ...``.

It asks to be killed when the worker that started it dies (Linux ``PR_SET_PDEATHSIG``: a case
never outlives its batch), caps its own address space at LIMIT_GB (``resource.RLIMIT_AS``; an
allocation beyond it raises ``MemoryError``) and runs the single-case command line
(``boneqct.cli.main``) with the remaining arguments, so a case is measured exactly as
``boneqct COMMAND ...`` measures it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time

from boneqct.resources import BYTES_PER_GB

#: Environment variable set by the worker for a case the batch's test hook makes hang.
HANG_ENV = "BONEQCT_BATCH_CHILD_HANGS"
#: prctl option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the worker that started it ends."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the worker died before the request took effect
        sys.exit(1)


def main(argv: list[str]) -> int:
    _die_with_parent()
    limit_bytes = int(float(argv[0]) * BYTES_PER_GB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    while os.environ.get(HANG_ENV) == "1":
        time.sleep(60)
    from boneqct.cli import main as command

    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
