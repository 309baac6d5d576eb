"""Goodput over a bad link: the sync agent's downloader against curl --continue-at - in a retry loop.

    python bench/bench_transfer.py --mb 4 --rate 64000 --latency 0.3 --cut-after 5

Serves one blob of MB random megabytes from a hub in this process, puts the user-space link proxy of
the tests (tests/support/linkproxy.py: added latency each way, a rate limit, every connection cut after
CUT_AFTER seconds) in front of it, then fetches the blob through it twice in the same run: with
content_sync.sync.transfer.Downloader (resumes, verifies the SHA-256) and with curl retried in a loop
with --continue-at - (resumes, verifies nothing). Reports time, goodput and the bytes that crossed
the link for each. Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from content_sync.hub.factory import create_hub_app
from content_sync.sync.transfer import Downloader, LinkPolicy
from tests.support.linkproxy import LinkProxy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=4)
    parser.add_argument("--rate", type=int, default=64_000, help="bytes per second")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds added each way")
    parser.add_argument("--cut-after", type=float, default=5.0)
    args = parser.parse_args()
    from appliance.server.http import create_server

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = os.urandom(args.mb * 1024 * 1024)
        sha = hashlib.sha256(data).hexdigest()
        (tmp / "hub" / "tree" / "blobs" / "sha256").mkdir(parents=True)
        (tmp / "hub" / "tree" / "blobs" / "sha256" / sha).write_bytes(data)
        server = create_server(create_hub_app(tmp / "hub"), host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        results = {}
        for name in ("library", "curl"):
            with LinkProxy(server.effective_port, latency=args.latency, rate=args.rate,
                           cut_after=args.cut_after) as proxy:
                url = f"http://127.0.0.1:{proxy.port}/releases/blobs/sha256/{sha}"
                target = tmp / f"{name}.bin"
                start = time.perf_counter()
                if name == "library":
                    downloader = Downloader(f"http://127.0.0.1:{proxy.port}/releases/", LinkPolicy())
                    got = downloader.fetch(f"blobs/sha256/{sha}", len(data), target)
                    attempts = downloader.requests
                else:
                    attempts = 0
                    while not target.exists() or target.stat().st_size < len(data):
                        attempts += 1
                        subprocess.run(["curl", "-s", "--continue-at", "-", "-o", str(target), url], check=False)
                    got = hashlib.sha256(target.read_bytes()).hexdigest()
                seconds = time.perf_counter() - start
                results[name] = (seconds, proxy.bytes_down, attempts, got == sha)
        server.close()
    size = args.mb * 1024 * 1024
    print(f"{args.mb} MB at {args.rate * 8 / 1000:.0f} kbit/s, +{args.latency * 2:.1f} s round trip, cut every "
          f"{args.cut_after:.0f} s")
    print("| client | time (s) | goodput (kB/s) | bytes over the link / size | requests | hash checked and right |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (seconds, down, attempts, ok) in results.items():
        print(f"| {name} | {seconds:.1f} | {size / seconds / 1000:.1f} | {down / size:.3f} | {attempts} | "
              f"{'yes' if ok and name == 'library' else ('matches' if ok else 'no')} |")
    ratio = results["curl"][0] / results["library"][0]
    print(f"library goodput / curl goodput: {ratio:.2f}")


if __name__ == "__main__":
    main()
