"""Long work the web server hands to a process of its own: the search index rebuilt, compacted or
brought up to date with many books (a release, an import), the sync agent's jobs run at a
librarian's word.

Python runs one thread at a time in a process. A rebuild of 1,075 books in a thread of a server
answering 20 phones' new searches took the interpreter from them: 47 searches a second instead of
295, p90 1.3 s instead of 87 ms; in a process of its own it changed nothing (BENCHMARKS.md, "The
librarian's jobs while phones read"). The child gets the server's settings whole
(``Settings.passed_on``) and ends when the server does.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

from appliance.search.errors import IndexBusy
from appliance.settings import Settings

logger = logging.getLogger(__name__)

CHILD_JOBS = ("rebuild-index", "compact-index", "catch-up", "sync")
BUSY = 75  # exit status: the search index was busy (another process rebuilds it or writes to it)


class JobFailed(RuntimeError):
    """A job's process ended with an error (its log says which)."""


def run(settings: Settings, job: str) -> None:
    """Run ``job`` in a process of its own and wait for it; IndexBusy when the index was busy,
    JobFailed when the job failed. The thread that calls it waits the whole time, as it must:
    Linux signals the child when the thread that started it ends."""
    if job not in CHILD_JOBS:
        raise ValueError(f"no such job: {job}")
    command = [sys.executable, "-m", "appliance.jobs.child", "--parent", str(os.getpid()), job]
    process = subprocess.Popen(command, env=settings.child_env(), stdin=subprocess.DEVNULL)
    try:
        code = process.wait()
    except BaseException:
        process.terminate()
        raise
    if code == BUSY:
        raise IndexBusy(f"{job}: the search index was busy")
    if code != 0:
        raise JobFailed(f"{job} ended with status {code}")


def _work(settings: Settings, job: str) -> None:
    if job == "sync":
        from content_sync.sync.agent import SyncAgent

        SyncAgent(settings).run_once()
        return
    from appliance.search import upkeep as indexing
    from appliance.search.index import SearchIndex
    from appliance.storage.db import connect

    db = connect(settings.db_path, migrate=False)
    index = SearchIndex(settings.index_dir)
    try:
        if job == "rebuild-index":
            indexing.rebuild(db, index)  # in this one process: the other cores are the readers'
        elif job == "catch-up":
            indexing.catch_up(db, index)
        else:
            indexing.compact(db, index)
    finally:
        index.close()
        db.close()


def main(argv: list[str] | None = None) -> int:
    """A job's process: do the job, then end with 0, BUSY or 1."""
    parser = argparse.ArgumentParser(prog="python -m appliance.jobs.child", description=main.__doc__)
    parser.add_argument("--parent", type=int, required=True, help="the server's pid")
    parser.add_argument("job", choices=CHILD_JOBS)
    args = parser.parse_args(argv)
    from appliance.memory import limit_arenas
    from appliance.workerpool import die_with_parent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    die_with_parent(args.parent, signal.SIGTERM)
    limit_arenas()
    try:
        _work(Settings.passed_on(), args.job)
    except IndexBusy as e:
        logger.info("%s: %s", args.job, e)
        return BUSY
    except Exception:
        logger.exception("%s failed", args.job)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
