"""A control group holding a server and its children to a Pi's memory and a share of the CPUs.

The box's systemd units cap the web server's memory (``MemoryMax`` in appliance/system/units.py);
a benchmark run inside such a group shows whether the server, its worker processes and the jobs
it starts (an index rebuild) stay within it under load, and what a smaller CPU budget does to the
pages. Needs root and cgroup v2 (``/sys/fs/cgroup/cgroup.controllers``) or v1 (``memory`` and
``cpu`` hierarchies under /sys/fs/cgroup). The memory counted is the kernel's: the processes'
own memory and the page cache of the files they read (which the kernel drops first when the
group reaches its limit).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class CgroupLimits:
    """A new control group named ``name`` with at most ``memory_mb`` of memory (no swap) and
    ``cpus`` CPUs' worth of time (None: no CPU limit). ``join`` is given to subprocess.Popen as
    ``preexec_fn``; ``report`` reads what the group used; ``remove`` deletes it once its
    processes have ended."""

    def __init__(self, name: str, memory_mb: int, cpus: float | None = None):
        self.memory_bytes = memory_mb * 1024 * 1024
        self.cpus = cpus
        self.v2 = (ROOT / "cgroup.controllers").exists()
        self.highest_processes = 0
        unique = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        if self.v2:
            self.dirs = [ROOT / unique]
            self.dirs[0].mkdir()
            _write(self.dirs[0] / "memory.max", str(self.memory_bytes))
            _write(self.dirs[0] / "memory.swap.max", "0", missing_ok=True)
            if cpus:
                _write(self.dirs[0] / "cpu.max", f"{int(cpus * PERIOD_US)} {PERIOD_US}")
        else:
            self.dirs = [ROOT / "memory" / unique] + ([ROOT / "cpu" / unique] if cpus else [])
            for d in self.dirs:
                d.mkdir()
            memory = self.dirs[0]
            _write(memory / "memory.limit_in_bytes", str(self.memory_bytes))
            _write(memory / "memory.memsw.limit_in_bytes", str(self.memory_bytes), missing_ok=True)
            if cpus:
                _write(self.dirs[1] / "cpu.cfs_period_us", str(PERIOD_US))
                _write(self.dirs[1] / "cpu.cfs_quota_us", str(int(cpus * PERIOD_US)))

    def watch(self, stop, every: float = 1.0) -> None:
        """Read the processes' own memory (not the page cache) every ``every`` s until ``stop`` is
        set, for ``report``'s highest (the kernel keeps only the highest of both together)."""
        while not stop.wait(every):
            self.highest_processes = max(self.highest_processes, self._processes_memory() or 0)

    def _processes_memory(self) -> int | None:
        stat = _keyed(self.dirs[0] / "memory.stat")
        return stat.get("anon", stat.get("total_rss"))

    def join(self) -> None:
        """Put the calling process in the group (its children follow it)."""
        for d in self.dirs:
            _write(d / "cgroup.procs", str(os.getpid()))

    def report(self) -> dict:
        """Memory in MB: the limit, now and the highest (None where the kernel does not say), of
        it the processes' own now and the highest ``watch`` saw, times the limit was hit, processes the kernel killed for it, and seconds the group was
        held back by the CPU limit."""
        memory = self.dirs[0]
        if self.v2:
            events = _keyed(memory / "memory.events")
            now, peak = _int(memory / "memory.current"), _int(memory / "memory.peak")
            hits, killed = events.get("max"), events.get("oom_kill")
            cpu = _keyed(memory / "cpu.stat")
            throttled_s = cpu["throttled_usec"] / 1e6 if "throttled_usec" in cpu else None
        else:
            now, peak = _int(memory / "memory.usage_in_bytes"), _int(memory / "memory.max_usage_in_bytes")
            hits, killed = _int(memory / "memory.failcnt"), _keyed(memory / "memory.oom_control").get("oom_kill")
            throttled = _keyed(self.dirs[1] / "cpu.stat").get("throttled_time") if self.cpus else None
            throttled_s = throttled / 1e9 if throttled is not None else None
        return {"limit_mb": round(self.memory_bytes / 2**20), "cpus": self.cpus,
                "now_mb": _mb(now), "highest_mb": _mb(peak), "processes_now_mb": _mb(self._processes_memory()),
                "processes_highest_mb": _mb(self.highest_processes or None),
                "limit_hits": hits, "oom_kills": killed,
                "cpu_throttled_s": round(throttled_s, 1) if throttled_s is not None else None}

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(100):  # the kernel takes a moment to let go of processes that just ended
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                print(f"the control group {d} still holds processes; remove it with rmdir once they end",
                      file=sys.stderr)


def _write(path: Path, value: str, missing_ok: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not missing_ok:
            raise


def _int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    out = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except FileNotFoundError:
        pass
    return out


def _mb(n: int | None) -> float | None:
    return round(n / 2**20, 1) if n is not None else None
