"""The process one batch case runs in: ``python -m boneqct.batch.child LIMIT_GB COMMAND ...``.

It caps its own address space at LIMIT_GB (``resource.RLIMIT_AS``; an allocation beyond it
raises ``MemoryError``, which the command reports as exit 2) and runs the single-case command
line (``boneqct.cli.main``) with the remaining arguments, so a case is measured exactly as
``boneqct COMMAND ...`` measures it.
"""

from __future__ import annotations

import resource
import sys

from boneqct.resources import BYTES_PER_GB


def main(argv: list[str]) -> int:
    limit_bytes = int(float(argv[0]) * BYTES_PER_GB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    from boneqct.cli import main as command

    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
