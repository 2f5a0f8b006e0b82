"""One supervised subprocess: start with its log in a file, identify it later, stop it for sure.

A process is identified by pid *and* its kernel start time, so a recorded pid that the kernel has
since reused for another program is never signalled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL the child when the starting thread's process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status remains
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find (and stop) a process again, possibly from another CLI call."""

    name: str
    pid: int
    started: int
    log: str

    def is_running(self) -> bool:
        return start_time(self.pid) == self.started

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "started": self.started, "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(str(data["pid"])),
            started=int(str(data["started"])),
            log=str(data["log"]),
        )


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start `argv` in its own session with stdout+stderr appended to `log`.

    `die_with_parent` is for test fixtures: the process cannot outlive a killed test run.
    `sidecarset cluster up` leaves it off, because the cluster must outlive the command.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    started = None
    for _ in range(100):
        started = start_time(proc.pid)
        if started is not None or proc.poll() is not None:
            break
        time.sleep(0.01)
    return proc, ProcessRecord(name=name, pid=proc.pid, started=started or 0, log=str(log))


def stop(record: ProcessRecord, *, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it."""
    if not record.is_running():
        return
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not record.is_running():
            _reap(record.pid)
            return
        _reap(record.pid)
        time.sleep(0.05)
    _signal_group(record.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(record.pid)
        if not record.is_running():
            return
        time.sleep(0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class StartupError(Exception):
    """A component did not become ready; the message carries the tail of its log."""


def wait_until(
    ready: Callable[[], bool],
    *,
    record: ProcessRecord,
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> None:
    """Poll `ready` until true; fail fast with the log tail if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not record.is_running():
            raise StartupError(
                f"{record.name} exited while starting; last lines of {record.log}:\n"
                f"{tail(record.log)}"
            )
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise StartupError(
        f"{what} not ready after {timeout:.0f}s; last lines of {record.log}:\n{tail(record.log)}"
    )
