"""A Dask worker plugin that starts the worker's case server as the worker starts.

Given to a LocalCluster's workers, it lets the case server's imports (a few seconds) run while
the cluster is still starting, instead of when the first case arrives.
"""

from __future__ import annotations

from distributed import WorkerPlugin

from boneqct.batch.case import CaseServer, close_idle_servers, give_back


class CaseServerStart(WorkerPlugin):
    """Start a case server with ``threads`` threads per library importing ``packages`` when
    the worker starts, without waiting for its imports (the first case waits for what is left
    of them); end the worker's idle servers when it closes."""

    def __init__(self, threads: int, packages: tuple[str, ...]):
        self.threads, self.packages = threads, packages

    def setup(self, worker) -> None:
        give_back(CaseServer(self.threads, self.packages))

    def teardown(self, worker) -> None:
        close_idle_servers(self.threads, self.packages)
