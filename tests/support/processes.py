"""Processes as /proc shows them, for the tests of servers that start others."""
from __future__ import annotations

import os
from pathlib import Path


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def child_running(parent: int, command_part: bytes, environ_part: bytes = b"") -> int | None:
    """The pid of a child of ``parent`` whose command line holds ``command_part`` (and whose
    environment holds ``environ_part``: a test's own data folder), if there is one."""
    for pid in children(parent):
        try:
            if command_part in Path(f"/proc/{pid}/cmdline").read_bytes() and \
                    environ_part in Path(f"/proc/{pid}/environ").read_bytes():
                return pid
        except OSError:  # it ended meanwhile
            pass
    return None
