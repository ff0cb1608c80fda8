"""Running an external tool and reading its output: into one buffer (decoded media can be tens
of megabytes: held once, never as ``bytes`` plus a copy), or block by block as it comes."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from emoflow.errors import ClipError, ToolMissingError


def tool_not_found(args: list[str]) -> ToolMissingError:
    """The error for a tool (``args[0]``) that is not installed."""
    return ToolMissingError(
        f"{args[0]!r} not found: install Debian's ffmpeg package (apt-get install ffmpeg) "
        "or set media.ffmpeg / media.ffprobe in the config"
    )


class Run:
    """A running tool: ``stdout`` to read; ``returncode`` and ``stderr`` once it has ended."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.stdout = proc.stdout
        self.returncode: int | None = None
        self.stderr = b""


@contextmanager
def running(args: list[str], timeout_s: float, what: str) -> Iterator[Run]:
    """Run ``args`` (stdin closed, stderr drained meanwhile, killed after ``timeout_s``); on
    leaving, wait for it and raise ``tool_timeout`` when the time limit killed it."""
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
    except FileNotFoundError as exc:
        raise tool_not_found(args) from exc
    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()
    timer = threading.Timer(float(timeout_s), proc.kill)
    timer.start()
    run = Run(proc)
    try:
        yield run
    finally:
        proc.stdout.close()
        run.returncode = proc.wait()
        fired = not timer.is_alive() and run.returncode < 0
        timer.cancel()
        drain.join()
        run.stderr = b"".join(err)
    if fired:
        raise ClipError("tool_timeout", f"{what} ran past its {timeout_s:g} s time limit")


def read_output(
    args: list[str], timeout_s: float, what: str, size: int
) -> tuple[bytearray, int, int, bytes]:
    """Run ``args`` and read its stdout into one buffer of about ``size`` bytes (grown when
    the output is longer): (buffer, bytes read, return code, stderr). The output is held
    once, never as ``bytes`` plus a copy (a 15-minute track is 58 MB at 16 kHz)."""
    buf = bytearray(max(int(size), 1 << 16))
    n = 0
    with running(args, timeout_s, what) as run:
        while True:
            if n == len(buf):
                buf.extend(bytes(len(buf)))  # no view of buf is alive here
            with memoryview(buf)[n:] as view:  # released before buf may grow
                got = run.stdout.readinto(view)
            if not got:
                break
            n += got
    return buf, n, int(run.returncode or 0), run.stderr


def output_blocks(run: Run, size: int) -> Iterator[bytes]:
    """The stdout of a :func:`running` tool, ``size`` bytes at a time (the last may be short)."""
    while True:
        data = run.stdout.read(size)
        if data:
            yield data
        if len(data) < size:
            return
