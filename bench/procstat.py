"""CPU time, memory and core placement of processes, read from /proc (Linux only).

CPU per request is a process's utime + stime delta over a measured window divided by the
requests it served in that window; it counts every thread of the process (executor threads
included), because /proc/<pid>/stat sums them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU seconds the process (all its threads) has used so far."""
    stat = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return utime / CLOCK_TICKS, stime / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process (all its threads) has used so far."""
    return sum(cpu_times(pid))


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS)."""
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def parent_pid(pid: int) -> int:
    stat = (PROC / str(pid) / "stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def descendants(pid: int) -> list[int]:
    """pid and every process below it (nginx master and its workers, for example)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                children.setdefault(parent_pid(int(entry.name)), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, ()))
    return found


def group_cpu_times(pids: Iterable[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes together (those still running)."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            u, s = cpu_times(pid)
            user, system = user + u, system + s
    return user, system


def pin(pid: int, cores: Iterable[int]) -> None:
    """Move every thread of a running process onto `cores` (threads created later inherit)."""
    cores = set(cores)
    for task in (PROC / str(pid) / "task").iterdir():
        with contextlib.suppress(ProcessLookupError, OSError):
            os.sched_setaffinity(int(task.name), cores)


@contextlib.contextmanager
def spawning_on(cores: Iterable[int]) -> Iterator[None]:
    """Processes started inside the block inherit `cores`: the calling thread moves there
    for the duration, then back."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclasses.dataclass(frozen=True)
class SystemCpu:
    """Busy CPU seconds of the whole machine (all cores), from /proc/stat."""

    busy: float
    total: float

    @classmethod
    def read(cls) -> SystemCpu:
        with open(PROC / "stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # guest time is already counted in user
        return cls(busy=(total - idle) / CLOCK_TICKS, total=total / CLOCK_TICKS)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = (PROC / "loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def maps_name_shared_object(maps: str, fragment: str) -> bool:
    """True when a /proc/<pid>/maps text maps a file whose path contains `fragment`."""
    return any(fragment in line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/" in line)


def runs_uvloop(pid: int) -> bool:
    """Whether the process has uvloop's compiled loop mapped: the event loop it really runs
    on, rather than the one its settings ask for."""
    return maps_name_shared_object(Path(f"/proc/{pid}/maps").read_text(), "/uvloop/loop.")


def command_output(argv: list[str]) -> str:
    """What a short command prints (a version line), or '' when it cannot run."""
    import subprocess

    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def find_process(comm: str) -> int | None:
    """The pid of a process whose command name is `comm` (the first found), or None."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    return int(entry.name)
    return None
