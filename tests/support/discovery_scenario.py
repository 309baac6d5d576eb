"""Two boxes meeting on a private network: run inside a fresh network namespace (``unshare -rn``).

Usage: unshare -rn python tests/support/discovery_scenario.py WORKDIR

Starts a village box and a van box (real ``library serve`` processes with discovery on, bound to
127.0.0.1 inside the namespace), browses for their services with zeroconf, watches the village's
home page for the van, stops the van with SIGTERM and watches both disappear. Prints one JSON
object with what it saw; tests/sync/test_discovery.py asserts on it. All traffic stays inside the
namespace this process lives in.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

from appliance.discovery import OPDS_TYPE, SYNC_TYPE, WEB_TYPE, peer_from_info, wait_for

VILLAGE_PORT, VAN_PORT = 18080, 18081
VAN_NAME = "Xe thư viện Mường Lay"
VILLAGE_NAME = "Thư viện Bản Lác"


def start_box(home: Path, name: str, port: int, role: str) -> subprocess.Popen:
    env = dict(os.environ, LIBRARY_HOME=str(home), LIBRARY_BOX_NAME=name, LIBRARY_BOX_ROLE=role,
               LIBRARY_DISCOVERY="yes", LIBRARY_DISCOVERY_INTERFACES="127.0.0.1",
               LIBRARY_DISK_RESERVE_MB="0", LIBRARY_PORT=str(port), LIBRARY_HOST="127.0.0.1")
    log = open(home.parent / f"{role}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def page(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            return answer.read().decode("utf-8")
    except OSError:
        return ""


def main(workdir: Path) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "multicast", "on"], check=True)
    report: dict = {"events": []}
    seen: dict[str, dict] = {}
    lock = threading.Lock()
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)

    def on_change(zeroconf, service_type, name, state_change):
        with lock:
            report["events"].append([state_change.name, name])
            if state_change is ServiceStateChange.Removed:
                seen.pop(name, None)
                return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        entry = {"type": service_type, "port": info.port, "props": props,
                 "addresses": info.parsed_addresses(IPVersion.V4Only)}
        if service_type == SYNC_TYPE:
            peer = peer_from_info(info)
            entry["peer"] = {"name": peer.name, "role": peer.role, "box_id": peer.box_id} if peer else None
        with lock:
            seen[name] = entry

    browsers = [ServiceBrowser(zc, kind, handlers=[on_change]) for kind in (WEB_TYPE, OPDS_TYPE, SYNC_TYPE)]
    (workdir / "village").mkdir(parents=True)
    (workdir / "van").mkdir(parents=True)
    village = start_box(workdir / "village", VILLAGE_NAME, VILLAGE_PORT, "village")
    van = start_box(workdir / "van", VAN_NAME, VAN_PORT, "van")
    try:
        report["village_up"] = wait_for(lambda: bool(page(VILLAGE_PORT)) or village.poll() is not None, 30) \
            and village.poll() is None
        report["van_up"] = wait_for(lambda: bool(page(VAN_PORT)) or van.poll() is not None, 30) \
            and van.poll() is None
        if not (report["village_up"] and report["van_up"]):
            report["logs"] = {role: (workdir / f"{role}.log").read_text(errors="replace")[-3000:]
                              for role in ("village", "van")}
            return report
        report["all_announced"] = wait_for(lambda: len(seen) >= 6, 20)
        with lock:
            report["services"] = dict(seen)
        start = time.monotonic()
        report["van_shown"] = wait_for(lambda: VAN_NAME in page(VILLAGE_PORT), 20)
        report["van_shown_after"] = round(time.monotonic() - start, 2)
        report["village_page"] = page(VILLAGE_PORT)
        report["van_page_names_village"] = VILLAGE_NAME in page(VAN_PORT).split("<main", 1)[-1]

        van.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        report["van_exit"] = van.wait(timeout=20)
        report["van_services_gone"] = wait_for(
            lambda: not any(VAN_NAME in name for name in list(seen)), 10)
        report["van_gone_after"] = round(time.monotonic() - stopped, 2)
        report["van_hidden"] = wait_for(lambda: VAN_NAME not in page(VILLAGE_PORT), 10)
        with lock:
            report["services_after"] = sorted(seen)
    finally:
        for process in (village, van):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        report["village_exit"] = village.returncode
        for browser in browsers:
            browser.cancel()
        zc.close()
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), ensure_ascii=False))
