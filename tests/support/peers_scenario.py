"""A hub, a van and a village box meeting on a private network (run inside ``unshare -rn``).

Usage: unshare -rn python tests/support/peers_scenario.py WORKDIR

Real processes: ``library hub serve``, ``library serve`` for the van and the village (zeroconf on,
bound to 127.0.0.1 in this namespace), and ``library sync run --once`` for each box's agent. The van
is never told the village's address: they find each other by zeroconf. Prints one JSON report.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appliance.books.demo import DemoBook, DemoChapter, write_epub
from appliance.discovery import wait_for
from appliance.stats import counts as stats
from appliance.storage import db as dbmod
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.sync import apply

CHANNEL = "vi-literature"
HUB, VAN, VILLAGE = 18090, 18081, 18080


def library(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/releases", timeout=2).read()
        return True
    except OSError:
        return False


def main(work: Path) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=True)
    report: dict = {}
    secret, public = minisign.write_key_pair(work / "publisher", "publisher")
    src = work / "src"
    for n in range(3):
        write_epub(src / f"t{n}.epub", DemoBook(title=f"Truyện làng {n}", authors=("Người kể",), language="vi",
                                                 chapters=(DemoChapter("Một", ("Ngày xưa có một bản nhỏ.",)),)))
    hub_data = work / "hub"
    publishing.build_release(src, CHANNEL, minisign.parse_secret_key(secret.read_text()), hub_data / "tree")
    processes = []
    base = dict(os.environ, LIBRARY_DISK_RESERVE_MB="0", LIBRARY_DISCOVERY="yes",
                LIBRARY_DISCOVERY_INTERFACES="127.0.0.1", LIBRARY_HOST="127.0.0.1", LIBRARY_STATS_MIN_TERM_COUNT="2")
    try:
        processes.append(subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "hub", "serve", "--data",
                                           str(hub_data), "--port", str(HUB)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        wait_for(lambda: up(HUB), 30)
        # The office issues each box its own enrollment token; the village's reaches the hub inside
        # its signed registration, carried by the van.
        tokens = library("hub", "enroll", "--data", str(hub_data), "--count", "2", env=base).stdout.split()
        envs = {}
        for token, (role, port, name) in zip(tokens, (("van", VAN, "Xe thư viện"), ("village", VILLAGE, "Thư viện Bản Lác")),
                                             strict=True):
            home = work / role
            (home / "keys" / "publishers").mkdir(parents=True)
            shutil.copy(public, home / "keys" / "publishers" / "publisher.pub")
            shutil.copy(hub_data / "keys" / "hub-ed25519.pub", home / "keys" / "hub.pub")
            db = dbmod.connect(home / "catalog.db")
            apply.subscribe(db, CHANNEL)
            db.close()
            env = dict(base, LIBRARY_HOME=str(home), LIBRARY_BOX_ROLE=role, LIBRARY_BOX_NAME=name,
                       LIBRARY_PORT=str(port), LIBRARY_HUB_URL=f"http://127.0.0.1:{HUB}" if role == "van" else "")
            envs[role] = env
            library("sync", "enroll", token, env=env)
            log = open(work / f"{role}.log", "wb")
            processes.append(subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
        report["boxes_up"] = wait_for(lambda: up(VAN) and up(VILLAGE), 30)

        steps = report["steps"] = []
        for who in ("van", "village"):
            done = library("sync", "run", "--once", env=envs[who])
            steps.append([who, done.returncode, done.stdout])
        village_db = work / "village" / "catalog.db"
        conn = dbmod.connect(village_db)
        report["village_version"] = apply.installed_version(conn, CHANNEL)
        report["village_books"] = conn.execute("SELECT count(*) FROM books").fetchone()[0]
        # Villagers read and search; the village's agent meets the van again and hands it the counts.
        stats.write_events(conn, [stats.Event("view", 1, "", -1, time.monotonic())] * 5
                           + [stats.Event("search", 0, "truyen lang", 1, time.monotonic())] * 3)
        conn.close()
        for who in ("village", "van", "van", "village"):
            done = library("sync", "run", "--once", env=envs[who])
            steps.append([who, done.returncode, done.stdout])
        hub_db = sqlite3.connect(hub_data / "hub.db")
        village_key = (work / "village" / "keys" / "box-ed25519.pub").read_text().strip()
        report["hub_batches_from_village"] = hub_db.execute("SELECT count(*) FROM batches WHERE box = ?",
                                                            [village_key]).fetchone()[0]
        report["hub_views_from_village"] = hub_db.execute(
            "SELECT coalesce(sum(count), 0) FROM book_counts WHERE box = ? AND kind = 'view'", [village_key]).fetchone()[0]
        report["carried_via"] = [row[0] for row in hub_db.execute("SELECT via FROM batches WHERE box = ?", [village_key])]
        report["van_key"] = (work / "van" / "keys" / "box-ed25519.pub").read_text().strip()
        hub_db.close()
        report["village_outbox"] = sorted(str(p.relative_to(work)) for p in (work / "village" / "outbox").glob("*/*.json"))
        report["van_outbox"] = sorted(str(p.relative_to(work)) for p in (work / "van" / "outbox").glob("*/*.json"))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return report


if __name__ == "__main__":
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(work), ensure_ascii=False))
