"""In-job scale-out of a shard's clips over a dask-jobqueue SLURMCluster (execution.dask: slurm)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DaskSubmitter:
    """``submit(fn, *args)`` over a dask Client (impure: every call is a new task)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, fn: Any, *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)


@contextmanager
def slurm_client(slurm_cfg: dict[str, Any], log_dir: Path) -> Iterator[DaskSubmitter]:
    """Start ``jobs`` SLURM worker jobs (``cores`` processes each), yield a submitter, clean up.

    Workers run this interpreter (``sys.executable``), so they import the same emoflow; closing
    the cluster cancels the worker jobs. Their ``slurm-<id>.out`` logs go to ``log_dir`` (never
    the working directory).
    """
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    options: dict[str, Any] = {
        "cores": slurm_cfg["cores"],
        "processes": slurm_cfg["cores"],
        "memory": slurm_cfg["memory"],
        "walltime": slurm_cfg["walltime"],
        "python": sys.executable,
        "scheduler_options": {"dashboard_address": None},
        "log_directory": str(log_dir),
    }
    if slurm_cfg["queue"]:
        options["queue"] = slurm_cfg["queue"]
    if slurm_cfg["interface"]:
        options["interface"] = slurm_cfg["interface"]
    with SLURMCluster(**options) as cluster:
        cluster.scale(jobs=slurm_cfg["jobs"])
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=600)
            yield DaskSubmitter(client)


@contextmanager
def local_client(workers: int) -> Iterator[DaskSubmitter]:
    """A dask LocalCluster of ``workers`` single-threaded processes (execution.dask: local)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as lc:
        with Client(lc) as client:
            yield DaskSubmitter(client)
