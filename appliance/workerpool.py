"""Worker processes for the heavy part of an import or a rebuild (a command's, never the web
server's: each worker is a fresh interpreter of 50 MB or more).

Workers are spawned, not forked (a fork would copy this process's threads' locks mid-use), and die
with the process that started them: an import killed by the kernel for memory, or by a librarian,
must not leave workers that go on reading books, or writing an index generation the next rebuild
will reuse.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that are killed when this process ends."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """In a worker: ask Linux for ``signum`` when the parent dies; if it died already, go."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):  # not Linux: workers may outlive a killed importer
        pass
    if os.getppid() != parent:
        os._exit(1)
