"""A real single-node SLURM cluster for tests: munged + slurmctld + slurmd on this machine.

Recipe: ``/work/shared/notes/slurm-local-cluster.md``. Everything the cluster writes (munge key,
``slurm.conf``, state, spool, daemon logs) lives under one folder, and the daemons run in the
foreground as children of this process so that they are always stopped by PID (TERM, then KILL),
also when the test fails.

Usage as a context manager::

    from slurm_cluster import slurm_cluster

    with slurm_cluster(tmp_path) as cluster:
        subprocess.run(["sinfo"], env=cluster.env, check=True)
        subprocess.run(
            cluster.snakemake_command("--cores", "1", profile="tests/slurm_profile"),
            env=cluster.env,
        )
        # or: cluster.run_snakemake(workdir, profile=..., timeout_s=120)

or as a pytest fixture (``cluster = slurm_cluster_fixture()`` at module level of a test file).

Nothing is installed here: when a binary is missing, :class:`SlurmUnavailableError` says what to
install (``.ci/slurm-install.sh``). The tests fail rather than skip, so a CI machine without
SLURM is noticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scontrol")
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
INSTALL_HINT = (
    "run `.ci/slurm-install.sh` as root, or: apt-get update && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
)
# A Unix socket path must fit in sun_path (108 bytes on Linux); keep a margin.
MAX_SOCKET_PATH = 100
CLIENT_TIMEOUT_S = 5
PARTITION = "debug"


class SlurmUnavailableError(RuntimeError):
    """SLURM or munge is missing, or this process is not root."""


class SlurmStartError(RuntimeError):
    """The daemons did not come up; the message carries their logs."""


def find_binary(name: str) -> str | None:
    """Return the path of ``name`` on PATH or in the sbin folders, or None."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=search)


def check_requirements() -> dict[str, str]:
    """Return the paths of the SLURM and munge binaries, or raise with what to install."""
    if os.geteuid() != 0:
        raise SlurmUnavailableError(
            "the single-node SLURM test cluster runs slurmd/slurmctld/munged as root; "
            "run the slurm tests as root"
        )
    found = {name: find_binary(name) for name in REQUIRED_BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise SlurmUnavailableError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
    return {name: path for name, path in found.items() if path is not None}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


OVERSUBSCRIBE = 2  # declared CPUs per real CPU


def node_hardware(slurmd: str) -> str:
    """Return the hardware part of ``slurmd -C`` (CPUs, sockets, cores, RealMemory)."""
    out = subprocess.run(
        [slurmd, "-C"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    first = out.splitlines()[0].split()
    # Drop "NodeName=..."; keep CPUs=, Boards=, SocketsPerBoard=, ..., RealMemory=; declare
    # twice the real CPUs (SlurmdParameters=config_overrides) so that four 1-CPU jobs run at
    # once on two cores: the plugin's status checks back off by 10 s after every check that
    # finds no job finished, so a run's time is mostly waits between waves of jobs.
    fields = dict(item.split("=", 1) for item in first if not item.startswith("NodeName="))
    cpus = OVERSUBSCRIBE * int(fields["CPUs"])
    fields.update(CPUs=str(cpus), Boards="1", SocketsPerBoard="1", CoresPerSocket=str(cpus),
                  ThreadsPerCore="1")  # fmt: skip
    return " ".join(f"{k}={v}" for k, v in fields.items())


def render_slurm_conf(
    state: Path,
    *,
    hostname: str,
    hardware: str,
    ctld_port: int,
    slurmd_port: int,
    gpus: int = 0,
) -> str:
    """Return a slurm.conf for one node (this machine) with all state under ``state``."""
    gres_node = f" Gres=gpu:{gpus}" if gpus else ""
    lines = [
        "ClusterName=emoflowci",
        f"SlurmctldHost={hostname}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={state / 'munge' / 'munge.socket.2'}",
        "CredType=cred/munge",
        f"StateSaveLocation={state / 'state'}",
        f"SlurmdSpoolDir={state / 'spool'}/slurmd-%n",
        f"SlurmctldPidFile={state / 'run'}/slurmctld.pid",
        f"SlurmdPidFile={state / 'run'}/slurmd-%n.pid",
        f"SlurmctldLogFile={state / 'log'}/slurmctld.log",
        f"SlurmdLogFile={state / 'log'}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        # Without it an impossible request stays PENDING forever instead of being refused.
        "EnforcePartLimits=ALL",
        # squeue keeps finished jobs visible for Snakemake's status checks and for the tests.
        "MinJobAge=300",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "SchedulerParameters=sched_interval=1",
        "SlurmdParameters=config_overrides",  # the node declares more CPUs than it has
        *(["GresTypes=gpu"] if gpus else []),
        f"NodeName={hostname} {hardware}{gres_node} NodeAddr=127.0.0.1 State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={hostname} Default=YES MaxTime=INFINITE State=UP "
        "DefMemPerCPU=1024",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class SlurmCluster:
    """A running single-node cluster: where it lives and how to talk to it."""

    root: Path
    hostname: str
    conf: Path
    env: dict[str, str]
    binaries: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        """Folder with the daemons' log files."""
        return self.root / "log"

    def run(
        self, args: Sequence[str], *, timeout_s: float = CLIENT_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command (``sinfo``, ``squeue``, ...) against this cluster.

        The call is wrapped in ``timeout``: with the controller down, clients retry for minutes.
        """
        cmd = ["timeout", "-k", "2", str(timeout_s), *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check)

    def node_state(self) -> str:
        """Return the node's state as ``sinfo`` reports it (``idle``, ``mixed``, ...)."""
        result = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def jobs(self) -> list[dict[str, str]]:
        """Return every job the controller still knows (running or finished < MinJobAge ago).

        Each job is the ``scontrol show job -o`` record as a dict (``JobId``, ``JobState``,
        ``Comment``, ``TresPerNode``, ``Command`` ...). Values holding spaces are kept whole
        as long as they do not contain ``=``.
        """
        out = self.run(["scontrol", "show", "job", "-o"], check=False).stdout
        return [parse_scontrol_record(line) for line in out.splitlines() if line.strip()]

    def snakemake_args(self, *, profile: str | Path | None = None, jobs: int = 2) -> list[str]:
        """Return ``snakemake`` arguments that run on this cluster.

        With ``profile`` the profile decides the rest (it should name ``executor: slurm``, as
        ``tests/slurm_profile`` does); without one, the options the test cluster needs are
        given explicitly.
        """
        if profile is not None:
            return ["--profile", str(profile), "--jobs", str(jobs)]
        return [
            "--executor",
            "slurm",
            "--jobs",
            str(jobs),
            "--default-resources",
            f"slurm_partition={PARTITION}",
            "mem_mb=256",
            "runtime=10",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--latency-wait",
            "5",
        ]

    def snakemake_command(
        self,
        *extra: str,
        profile: str | Path | None = None,
        jobs: int = 2,
        timeout_s: int = 600,
        snakemake: str | None = None,
    ) -> list[str]:
        """Return the full command: ``timeout -k 10 <n> snakemake <cluster args> <extra>``.

        The ``timeout`` matters: a status loop that never ends ignores SIGTERM.
        ``snakemake`` defaults to the one next to the running Python.
        """
        exe = snakemake or str(Path(sys.executable).parent / "snakemake")
        return [
            "timeout",
            "-k",
            "10",
            str(timeout_s),
            exe,
            *self.snakemake_args(profile=profile, jobs=jobs),
            *extra,
        ]

    def run_snakemake(
        self,
        workdir: Path,
        *extra: str,
        profile: str | Path | None = None,
        jobs: int = 2,
        timeout_s: int = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run Snakemake in ``workdir`` on this cluster; output captured, never raises on rc."""
        cmd = self.snakemake_command(*extra, profile=profile, jobs=jobs, timeout_s=timeout_s)
        return subprocess.run(
            cmd, cwd=workdir, env=self.env, capture_output=True, text=True, check=False
        )

    def logs(self, max_chars: int = 20_000) -> str:
        """Return the tail of each daemon log, headed by its file name."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            text = path.read_text(errors="replace")
            parts.append(f"===== {path} =====\n{text[-max_chars:]}")
        return "\n".join(parts)


def parse_scontrol_record(line: str) -> dict[str, str]:
    """Parse one ``scontrol show job -o`` line into a dict of its ``Key=Value`` fields."""
    record: dict[str, str] = {}
    key: str | None = None
    for token in line.split(" "):
        name, sep, value = token.partition("=")
        if sep and name and name.replace("/", "").replace(":", "").isalnum():
            key = name
            record[key] = value
        elif key is not None:
            record[key] += " " + token
    return {name: value.strip() for name, value in record.items()}


def _state_dir(base: Path | None) -> tuple[Path, bool]:
    """Pick the cluster folder: ``base/slurm`` unless a socket path in it could be too long.

    The longest is slurmstepd's ``spool/slurmd-<host>/<host>_<jobid>.<step>`` (job ids grow).
    """
    if base is not None:
        candidate = Path(base).resolve() / "slurm"
        host = socket.gethostname().split(".")[0]
        stepd = candidate / "spool" / f"slurmd-{host}" / f"{host}_9999999.4294967291"
        if len(str(stepd)) <= MAX_SOCKET_PATH:
            return candidate, False
    return Path(tempfile.mkdtemp(prefix="emoflow-slurm-")), True


def _write_munge_key(munge_dir: Path) -> Path:
    """Write a fresh 1 KiB munge key (mode 400) into ``munge_dir`` (mode 755)."""
    munge_dir.mkdir(parents=True, exist_ok=True)
    munge_dir.chmod(0o755)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    return key


def _srun_wrapper(bin_dir: Path, conf: Path, real_srun: str | None) -> None:
    """Put an ``srun`` first on PATH that re-exports SLURM_CONF.

    The plugin's job step strips every ``SLURM_*`` variable before its nested ``srun``; without
    this the job fails with "Could not establish a configuration source".
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = real_srun or "/usr/bin/srun"
    wrapper = bin_dir / "srun"
    wrapper.write_text(f'#!/bin/sh\nexport SLURM_CONF="{conf}"\nexec "{target}" "$@"\n')
    wrapper.chmod(0o755)


def _stop(processes: dict[str, subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """Stop daemons in reverse start order by PID: SIGTERM, wait, then SIGKILL."""
    for name in reversed(list(processes)):
        proc = processes[name]
        if proc.poll() is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)


def _start_daemon(
    processes: dict[str, subprocess.Popen[bytes]],
    name: str,
    cmd: list[str],
    log_dir: Path,
    env: dict[str, str],
) -> subprocess.Popen[bytes]:
    """Start one daemon in the foreground, its stdout/stderr into ``log_dir/<name>.out``."""
    with open(log_dir / f"{name}.out", "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    processes[name] = proc
    return proc


def _wait_for(
    predicate: Callable[[], bool],
    timeout_s: float,
    processes: dict[str, subprocess.Popen[bytes]],
    what: str,
) -> None:
    """Poll ``predicate`` until true; fail early when a daemon died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = {n: p.returncode for n, p in processes.items() if p.poll() is not None}
        if dead:
            raise SlurmStartError(f"{what}: daemon(s) exited early {dead}")
        time.sleep(0.1)
    raise SlurmStartError(f"{what}: not reached within {timeout_s} s")


@contextlib.contextmanager
def slurm_cluster(
    base: Path | None = None,
    *,
    gpus: int = 0,
    start_timeout_s: float = 30.0,
    keep: bool = True,
) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd for this machine; stop them by PID on exit.

    ``base``: folder for the cluster's files (``base/slurm``; a short temp folder is used instead
    when the munge socket path would be too long). ``gpus``: declare that many fake ``gpu`` GRES
    on the node (``gres.conf`` with ``File=/dev/null``) so that ``--gres=gpu:N`` requests are
    accepted and recorded; nothing gets a real device. ``keep``: leave the folder (logs) behind.

    On an exception inside the block, the daemon logs are printed to stderr before the daemons
    are stopped; the exception propagates.
    """
    binaries = check_requirements()
    root, made_temp = _state_dir(base)
    for sub in ("munge", "state", "spool", "run", "log", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    hostname = subprocess.run(
        ["hostname", "-s"], capture_output=True, text=True, check=True
    ).stdout.strip()
    conf = root / "slurm.conf"
    conf.write_text(
        render_slurm_conf(
            root,
            hostname=hostname,
            hardware=node_hardware(binaries["slurmd"]),
            ctld_port=free_port(),
            slurmd_port=free_port(),
            gpus=gpus,
        )
    )
    if gpus:
        (root / "gres.conf").write_text(
            f"NodeName={hostname} Name=gpu Count={gpus} File=/dev/null\n"
        )
    _srun_wrapper(root / "bin", conf, find_binary("srun"))
    env = dict(os.environ)
    env["SLURM_CONF"] = str(conf)
    env["PATH"] = os.pathsep.join(
        [str(root / "bin"), str(Path(sys.executable).parent), env.get("PATH", ""), *SBIN_DIRS]
    )
    # A Snakemake run inside a SLURM job must not think it is already inside one.
    for name in list(env):
        if name.startswith("SLURM_") and name != "SLURM_CONF":
            del env[name]

    cluster = SlurmCluster(root=root, hostname=hostname, conf=conf, env=env, binaries=binaries)
    munge = root / "munge"
    key = _write_munge_key(munge)
    log_dir = root / "log"
    try:
        _start_daemon(
            cluster.processes,
            "munged",
            [
                binaries["munged"],
                "--foreground",
                "--force",
                f"--socket={munge / 'munge.socket.2'}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={log_dir / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
            log_dir,
            env,
        )
        _wait_for(
            lambda: (munge / "munge.socket.2").exists(), start_timeout_s, cluster.processes, "munge"
        )
        _start_daemon(
            cluster.processes,
            "slurmctld",
            [binaries["slurmctld"], "-D", "-c", "-f", str(conf)],
            log_dir,
            env,
        )
        _start_daemon(
            cluster.processes, "slurmd", [binaries["slurmd"], "-D", "-f", str(conf)], log_dir, env
        )
        _wait_for(
            lambda: cluster.node_state() == "idle",
            start_timeout_s,
            cluster.processes,
            "node idle in sinfo",
        )
        yield cluster
    except BaseException:
        print(f"\n--- SLURM test cluster logs ({root}) ---\n{cluster.logs()}", file=sys.stderr)
        raise
    finally:
        _stop(cluster.processes)
        if made_temp and not keep:
            shutil.rmtree(root, ignore_errors=True)


def slurm_cluster_fixture(**options: Any) -> Callable[..., Iterator[SlurmCluster]]:
    """Return a pytest fixture that yields a running :class:`SlurmCluster` for one test.

    In a test module::

        from slurm_cluster import slurm_cluster_fixture

        cluster = slurm_cluster_fixture(gpus=1)

        def test_x(cluster): ...
    """
    import pytest

    @pytest.fixture
    def _fixture(tmp_path: Path) -> Iterator[SlurmCluster]:
        with slurm_cluster(tmp_path, **options) as running:
            try:
                yield running
            finally:
                # pytest shows captured teardown output only for failing tests.
                print(f"--- SLURM test cluster logs ({running.root}) ---\n{running.logs()}")

    return _fixture
